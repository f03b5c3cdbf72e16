#!/bin/bash
# packaging/build-debs.sh: build, check and test the tbgw Debian packages.
#
#   build    tbgw_VERSION_amd64.deb natively, _arm64.deb and _armhf.deb cross-compiled
#            (dpkg-buildpackage [-a ARCH] -us -uc -b), each in a fresh Debian 12 chroot
#            made by mmdebstrap, with the Build-Depends of debian/control installed by
#            apt-get build-dep (multiarch -dev packages of ARCH for the cross builds). The
#            native build runs the unit tests; the cross builds use the nocheck profile.
#   lintian  on each build (.changes: the .deb, its -dbgsym .deb and the .buildinfo);
#            any error or warning fails
#   qemu     packaging/qemu-check.sh for arm64 and armhf: tbgw --version and
#            --check-config under qemu-user, on the libraries the package's Depends pull in
#   install  tests/packaging/test-deb.sh on the amd64 package, in a fresh Debian 12 chroot
#            (install, upgrade, conffile kept, remove, purge, systemd-analyze)
#
# Runs every step even after a failure; prints the timings, and exits 1 if anything
# failed. Needs root (mmdebstrap in root mode, chroot) and the Debian mirror; installs
# mmdebstrap, lintian and qemu-user-static with apt-get if they are missing. Nothing else
# is installed on this machine.
#
# Results in packaging/out/ (emptied first): the .debs, .changes, .buildinfo, the logs
# (build-ARCH.log, lintian-ARCH.txt, qemu-check-ARCH.log, test-deb-amd64.log,
# build-debs.log: this output) and SHA256SUMS.
#
# Environment:
#   TBGW_ARCHS        the architectures to build (default "amd64 arm64 armhf"; the first
#                     one that can run here is built natively and install-tested)
#   TBGW_PKG_CACHE    where downloaded .debs are kept between runs (default
#                     /var/cache/tbgw-packaging; "none": no cache)
#   TBGW_MIRROR, TBGW_SECURITY_MIRROR, TBGW_SUITE, TBGW_KEYRING: see packaging/common.sh
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/common.sh"

archs=${TBGW_ARCHS:-"amd64 arm64 armhf"}
cache=${TBGW_PKG_CACHE:-/var/cache/tbgw-packaging}
out=$top/packaging/out
native=$(dpkg --print-architecture)
jobs=$(nproc)

[ "$(id -u)" = 0 ] || die "run as root: the builds run in chroots made by mmdebstrap (root mode)"
[ -f "$top/debian/changelog" ] || die "$top/debian/changelog: not a tbgw source tree"

mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
exec > >(tee "$out/build-debs.log") 2>&1

work=$(mktemp -d /var/tmp/tbgw-build-debs.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

t_all=$(tbgw_now)
steps=() results=() times=()
record() { steps+=("$1"); results+=("$2"); times+=("$3"); }
# step NAME FUNCTION ARGS...: run, time and record it (PASS or FAIL), and go on.
step() {
    local name=$1 t0 rc; shift
    printf '\n======== %s\n' "$name"
    t0=$(tbgw_now)
    "$@"; rc=$?
    if [ $rc = 0 ]; then record "$name" PASS "$(tbgw_since "$t0")"
    else record "$name" FAIL "$(tbgw_since "$t0")"; say "-------- $name: FAILED"; fi
    return 0
}
skip() { printf '\n======== %s\n%s\n' "$1" "skipped: $2"; record "$1" SKIP 0.0; }

notes=()
# sources_for WHAT ARCH...: the mirror lines into $sources, and a note for the summary
# when the security suite had to be left out.
sources_for() {
    local what=$1; shift
    mapfile -t sources < <(tbgw_sources "$@")
    if ! printf '%s\n' "${sources[@]}" | grep -q -- "$TBGW_SUITE-security"; then
        notes+=("$what: without $TBGW_SUITE-security (the mirror's index of it for $* is inconsistent)")
    fi
}

cache_hooks=()
if [ "$cache" != none ]; then
    mkdir -p "$cache"
    cache_hooks=(--skip=essential/unlink
                 --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
                 --setup-hook="sync-in $cache /var/cache/apt/archives/")
fi
cache_out=()
[ "$cache" != none ] && cache_out=(--customize-hook="sync-out /var/cache/apt/archives $cache")

# ---------------------------------------------------------------------------------------
tools() {
    tbgw_need_tools mmdebstrap:mmdebstrap lintian:lintian qemu-aarch64-static:qemu-user-static \
        qemu-arm-static:qemu-user-static dpkg-parsechangelog:dpkg-dev file:file || return 1
    say "host:       $(. /etc/os-release && echo "$PRETTY_NAME") $native, $jobs CPUs"
    say "mmdebstrap: $(mmdebstrap --version | awk '{print $2}')   lintian: $(lintian --version | awk '{print $2}')   qemu: $(qemu-aarch64-static --version | awk 'NR==1 {print $3}')"
    say "mirror:     $TBGW_MIRROR $TBGW_SUITE (+ $TBGW_SECURITY_MIRROR $TBGW_SUITE-security where consistent)"
    say "apt cache:  $cache"
}

# The source: the working tree's files as git sees them (tracked, and untracked but not
# ignored: generated autotools files and packaging/out stay out), or all of it outside git.
source_tree() {
    local src=$work/src/tbgw
    mkdir -p "$src"
    if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$top" && git ls-files -z -co --exclude-standard | grep -zv '^packaging/out/' |
            xargs -0 cp -a --parents -t "$src") || return 1
        say "source:     $top at $(git -C "$top" describe --always --dirty 2>/dev/null)" \
            "($(git -C "$top" status --porcelain | wc -l) paths changed or new)"
    else
        (cd "$top" && tar --exclude=./packaging/out --exclude=./.git -cf - .) | tar -xf - -C "$src" || return 1
        say "source:     $top (not a git work tree: copied whole)"
    fi
    version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version) || return 1
    say "version:    $version ($(find "$src" -type f | wc -l) files)"
    cat > "$work/chroot-build.sh" <<'EOF'
#!/bin/sh
# In the build chroot: install the Build-Depends, build, and leave the results and the
# status in /build/out (the hook always succeeds, so that the log comes out).
arch=$1 native=$2
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
mkdir -p /build/out
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
(
    set -e
    cd /build/tbgw
    if [ "$arch" = "$native" ]; then
        echo "== apt-get build-dep ./"
        apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends build-dep ./
        echo "== dpkg-buildpackage -us -uc -b"
        DEB_BUILD_OPTIONS="parallel=$JOBS" dpkg-buildpackage -us -uc -b
    else
        echo "== apt-get build-dep -a $arch -P nocheck ./"
        apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends build-dep -a "$arch" -P nocheck ./
        echo "== dpkg-buildpackage -a $arch -Pnocheck -us -uc -b"
        DEB_BUILD_OPTIONS="nocheck parallel=$JOBS" dpkg-buildpackage -a "$arch" -Pnocheck -us -uc -b
    fi
    cd /build
    mv ./*.deb ./*.changes ./*.buildinfo /build/out/
) > /build/out/build.log 2>&1
echo $? > /build/out/status
exit 0
EOF
    chmod 0755 "$work/chroot-build.sh"
}

build() {
    local arch=$1 dest=$work/out-$1 archlist include=() rc
    if [ "$arch" = "$native" ]; then archlist=$arch
    else archlist="$native,$arch"; include=(--include="crossbuild-essential-$arch"); fi
    mkdir -p "$dest"
    sources_for "build $arch" $(echo "$archlist" | tr ',' ' ')
    say "chroot: $TBGW_SUITE, buildd variant, architectures $archlist"
    JOBS=$jobs mmdebstrap --mode=root --variant=buildd --architectures="$archlist" "${include[@]}" \
        "${cache_hooks[@]}" \
        --customize-hook='mkdir -p "$1/build"' \
        --customize-hook="copy-in $work/src/tbgw $work/chroot-build.sh /build" \
        --customize-hook="chroot \"\$1\" env JOBS=$jobs /build/chroot-build.sh $arch $native" \
        --customize-hook="sync-out /build/out $dest" \
        "${cache_out[@]}" \
        "$TBGW_SUITE" /dev/null "${sources[@]}" > "$out/chroot-$arch.log" 2>&1
    rc=$?
    [ -f "$dest/build.log" ] && cp "$dest/build.log" "$out/build-$arch.log"
    if [ $rc != 0 ]; then
        tail -n 20 "$out/chroot-$arch.log"; say "mmdebstrap failed (exit $rc): $out/chroot-$arch.log"; return 1
    fi
    rm -f "$out/chroot-$arch.log"
    if [ "$(cat "$dest/status" 2>/dev/null)" != 0 ]; then
        tail -n 40 "$out/build-$arch.log"; say "the build failed: $out/build-$arch.log"; return 1
    fi
    cp "$dest"/*.deb "$dest"/*.changes "$dest"/*.buildinfo "$out/"
    # What the log says about the compiler, pkg-config and the tests, then the package.
    grep -E "^checking for ([a-z0-9_-]+-)?(gcc|pkg-config)\.\.\.|^checking whether we are cross compiling|^# (TOTAL|PASS|FAIL|ERROR):|^dpkg-buildpackage: info: (source|host)" \
        "$out/build-$arch.log" | sed 's/^/  | /'
    local deb=$out/tbgw_${version}_$arch.deb
    [ -f "$deb" ] || { say "no $deb"; return 1; }
    dpkg-deb -f "$deb" Package Version Architecture Installed-Size Depends | sed 's/^/  /'
    say "  $(basename "$deb"): $(stat -c %s "$deb") bytes; $(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/sbin/tbgw | file -b - | cut -d, -f1-2)"
}

run_lintian() {
    local arch=$1 d=$work/lintian-$1 rc
    mkdir -p "$d"
    cp "$out"/tbgw*_"${version}_$arch".deb "$out/tbgw_${version}_$arch.changes" \
       "$out/tbgw_${version}_$arch.buildinfo" "$d/"
    chmod -R a+rX "$d"
    # Not as root (lintian warns against it).
    (cd "$d" && setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$d" \
        lintian --display-info --pedantic --show-overrides --fail-on error,warning \
        "tbgw_${version}_$arch.changes") > "$out/lintian-$arch.txt" 2>&1
    rc=$?
    say "\$ lintian --display-info --pedantic --show-overrides --fail-on error,warning tbgw_${version}_$arch.changes"
    if [ -s "$out/lintian-$arch.txt" ]; then sed 's/^/  | /' "$out/lintian-$arch.txt"; else say "  | (no output)"; fi
    say "  lintian exit status $rc; tags: $(grep -cE '^E:' "$out/lintian-$arch.txt") errors," \
        "$(grep -cE '^W:' "$out/lintian-$arch.txt") warnings, $(grep -cE '^[IP]:' "$out/lintian-$arch.txt") info/pedantic," \
        "$(grep -cE '^O:' "$out/lintian-$arch.txt") overridden"
    return $rc
}

qemu() {
    local arch=$1
    "$here/qemu-check.sh" "$arch" "$out/tbgw_${version}_$arch.deb" 2>&1 | tee "$out/qemu-check-$arch.log"
    local rc=${PIPESTATUS[0]}
    if grep -q "^WARNING: .*$TBGW_SUITE-security has no consistent index" "$out/qemu-check-$arch.log"; then
        notes+=("qemu $arch: runtime libraries without $TBGW_SUITE-security (inconsistent index)")
    fi
    return "$rc"
}

install_test() {
    local arch=$1 deb=$out/tbgw_${version}_$1.deb rc
    sources_for "install test $arch" "$arch"
    say "chroot: $TBGW_SUITE, important variant + man-db (a standard system), $arch"
    mmdebstrap --mode=root --variant=important --include=man-db "${cache_hooks[@]}" \
        --customize-hook='mkdir -p "$1/tmp/t"' \
        --customize-hook="copy-in $top/tests/packaging/test-deb.sh $deb /tmp/t" \
        --customize-hook="chroot \"\$1\" /tmp/t/test-deb.sh /tmp/t/$(basename "$deb")" \
        "${cache_out[@]}" \
        "$TBGW_SUITE" /dev/null "${sources[@]}" > "$work/install-chroot.log" 2>&1
    rc=$?
    # The test's own lines, without mmdebstrap's.
    grep -vE '^(I|W): ' "$work/install-chroot.log" > "$out/test-deb-$arch.log"
    cat "$out/test-deb-$arch.log"
    [ $rc = 0 ] || { grep -E '^(E|W): ' "$work/install-chroot.log"; return 1; }
}

# ---------------------------------------------------------------------------------------
step "tools" tools
step "source" source_tree
built=()
for arch in $archs; do
    step "build $arch" build "$arch"
    [ "${results[-1]}" = PASS ] && built+=("$arch")
done
for arch in $archs; do
    if [[ " ${built[*]} " == *" $arch "* ]]; then step "lintian $arch" run_lintian "$arch"
    else skip "lintian $arch" "no package"; fi
done
for arch in $archs; do
    [ "$arch" = "$native" ] && continue
    if [[ " ${built[*]} " == *" $arch "* ]]; then step "qemu $arch" qemu "$arch"
    else skip "qemu $arch" "no package"; fi
done
if [[ " ${built[*]} " == *" $native "* ]]; then step "install test $native" install_test "$native"
else skip "install test $native" "no $native package"; fi

# ---------------------------------------------------------------------------------------
(cd "$out" && sha256sum ./*.deb > SHA256SUMS 2>/dev/null)
printf '\n======== summary\n'
failed=0
for i in "${!steps[@]}"; do
    printf '  %-22s %-5s %7s s\n' "${steps[$i]}" "${results[$i]}" "${times[$i]}"
    [ "${results[$i]}" = PASS ] || failed=1
done
printf '  %-22s %-5s %7s s\n' total "$([ $failed = 0 ] && echo PASS || echo FAIL)" "$(tbgw_since "$t_all")"
exposure=$(sed -n 's/.*Overall exposure level for tbgw.service: \([0-9.]*\).*/\1/p' "$out"/test-deb-*.log 2>/dev/null | head -1)
[ -n "$exposure" ] && say "  systemd-analyze security --offline=yes tbgw.service: exposure $exposure"
for note in "${notes[@]}"; do say "  note: $note"; done
say ""
(cd "$out" && ls -l ./*.deb 2>/dev/null | awk '{ printf "  %9d  %s\n", $5, $NF }')
say "  results in $out"
exit $failed
