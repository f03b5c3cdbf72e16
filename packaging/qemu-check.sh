#!/bin/bash
# packaging/qemu-check.sh ARCH DEB: run a foreign-architecture tbgw package under qemu.
#
# Makes a root of ARCH from the package's own Depends (mmdebstrap --variant=extract: the
# packages and their dependencies, unpacked, no maintainer scripts run), unpacks DEB into
# it, and runs, with qemu-user-static (binfmt need not be registered):
#
#   tbgw --version
#   tbgw --check-config -c ROOT/etc/tbgw.conf      (the configuration the package installs)
#   tbgwctl --version
#
# A library missing from Depends fails here. The emulated CPU is the oldest Raspberry Pi
# core the package is meant for: Cortex-A53 for arm64 (Pi 3, Zero 2 W), Cortex-A7 for
# armhf (Pi 2); QEMU_CPU=... overrides it. Exit status 0 when all three succeed.
#
# Environment: TBGW_KEEP_ROOT=1 keeps the root (its path is printed); TBGW_MIRROR,
# TBGW_SECURITY_MIRROR, TBGW_SUITE, TBGW_KEYRING as in packaging/common.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

[ $# = 2 ] || { echo "usage: $0 ARCH DEB" >&2; exit 64; }
arch=$1
deb=$(realpath "$2")
[ -f "$deb" ] || die "$2: no such file"
[ "$(tbgw_deb_arch "$deb")" = "$arch" ] || die "$deb is for $(tbgw_deb_arch "$deb"), not $arch"

case $arch in
    arm64) qemu=qemu-aarch64-static; cpu=${QEMU_CPU:-cortex-a53} ;;
    armhf) qemu=qemu-arm-static;     cpu=${QEMU_CPU:-cortex-a7} ;;
    amd64) qemu=qemu-x86_64-static;  cpu=${QEMU_CPU:-max} ;;
    i386)  qemu=qemu-i386-static;    cpu=${QEMU_CPU:-max} ;;
    *) die "no qemu mapping for $arch" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap makes the root in root mode)"
tbgw_need_tools mmdebstrap:mmdebstrap "$qemu:qemu-user-static"

root=$(mktemp -d "${TMPDIR:-/tmp}/tbgw-qemu-$arch.XXXXXX")
if [ "${TBGW_KEEP_ROOT:-0}" != 1 ]; then trap 'rm -rf "$root"' EXIT; fi

deps=$(tbgw_deb_depends "$deb")
say "qemu-check: $arch root from Depends: $deps"
mapfile -t sources < <(tbgw_sources "$arch")
t0=$(tbgw_now)
# Merged /usr, as Debian 12 and Raspberry Pi OS bookworm are: every library is then found
# on the loader's first try. This matters under qemu-user 7.2: its -L prefix is not applied
# to statx(), so 32-bit glibc (which stats through statx) would find /lib/<triplet> absent
# after one miss there and stop looking in it.
log=$(mktemp)
if ! mmdebstrap --mode=root --variant=extract --architectures="$arch" \
        --setup-hook=/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh \
        --include="$deps" "$TBGW_SUITE" "$root" "${sources[@]}" > "$log" 2>&1; then
    cat "$log"; rm -f "$log"
    die "mmdebstrap could not make a $arch root from the Depends of $deb"
fi
rm -f "$log"
[ -L "$root/lib" ] || die "$root/lib is not a symlink to usr/lib: not a merged-/usr root"
dpkg-deb --fsys-tarfile "$deb" | tar -C "$root" -x --keep-directory-symlink
[ -L "$root/lib" ] || die "$root/lib is no longer a symlink to usr/lib after unpacking $deb"
# Without a cache of its own, qemu would hand the loader the host's /etc/ld.so.cache (the
# -L prefix falls back to host files), whose 32-bit x86 entries armhf's loader takes for
# its own. An empty cache is ignored: the loader searches its default directories.
: > "$root/etc/ld.so.cache"
say "qemu-check: root ready in $(tbgw_since "$t0") s ($(du -sh "$root" | cut -f1)); CPU $cpu"

export QEMU_CPU=$cpu
fail=0
run() {
    local out rc
    local shown="$*"
    say "\$ $qemu -L ROOT ROOT/usr/sbin/${shown//$root/ROOT}"
    set +e
    out=$("$qemu" -L "$root" "$root/usr/sbin/$@" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out" | sed -e "s|$root|ROOT|g" -e 's/^/    /'
    say "    (exit status $rc)"
    [ $rc = 0 ] || fail=1
    LAST_OUT=$out
}

run tbgw --version
version=$(dpkg-deb -f "$deb" Version)
case $LAST_OUT in
    "tbgw ${version%%-*}"*) ;;
    *) say "    expected: tbgw ${version%%-*}"; fail=1 ;;
esac
run tbgw --check-config -c "$root/etc/tbgw.conf"
case $LAST_OUT in
    *"configuration is valid"*) ;;
    *) say "    expected: configuration is valid"; fail=1 ;;
esac
run tbgwctl --version

if [ "${TBGW_KEEP_ROOT:-0}" = 1 ]; then say "qemu-check: root kept in $root"; fi
if [ $fail = 0 ]; then
    say "qemu-check: $arch OK"
else
    say "qemu-check: $arch FAILED"
fi
exit $fail
