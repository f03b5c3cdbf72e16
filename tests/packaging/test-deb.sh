#!/bin/bash
# tests/packaging/test-deb.sh DEB: install, upgrade, remove and purge the tbgw package on
# the Debian 12 system this runs on, and check every step.
#
#   install (apt-get install ./DEB), with the dependencies from the mirror
#   the files, the conffile, the user (system, in dialout), /etc/tbgw.conf 0640 root:tbgw,
#   tbgw --check-config as root and as tbgw, systemd-analyze verify and security
#   reinstall, upgrade to a repacked higher version, upgrade to one whose shipped
#   /etc/tbgw.conf changed: the local edit of /etc/tbgw.conf and /var/lib/tbgw survive
#   remove: the configuration and the state stay;  purge: nothing of tbgw is left but
#   the system user; install again over the existing user, purge again
#   finally the packages the test pulled in are purged and the file tree is compared
#   with the one before the test
#
# Meant for a throwaway chroot (packaging/build-debs.sh runs it in a fresh mmdebstrap
# one). Elsewhere it refuses to run unless TBGW_TEST_ON_HOST=yes; then it removes what it
# added (the packages it pulled in, the user tbgw if it made it) when it ends. It refuses
# to run where tbgw is installed already. Prints a line per check; exit status 0 when all
# pass, 1 at the first failure.
set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

[ $# = 1 ] || { echo "usage: $0 DEB" >&2; exit 64; }
[ -f "$1" ] || { echo "$1: no such file" >&2; exit 64; }
[ "$(id -u)" = 0 ] || { echo "$0: run as root" >&2; exit 64; }

in_chroot=no
if command -v ischroot >/dev/null && ischroot; then in_chroot=yes; fi
if [ $in_chroot = no ] && [ "${TBGW_TEST_ON_HOST:-}" != yes ]; then
    echo "$0: not in a chroot. This installs, upgrades and purges tbgw here; set" \
         "TBGW_TEST_ON_HOST=yes to run it on this machine anyway." >&2
    exit 64
fi
if dpkg-query -W -f '${db:Status-Status}' tbgw 2>/dev/null | grep -qv '^not-installed$'; then
    echo "$0: tbgw is installed here already (dpkg -l tbgw): test on a clean system" >&2
    exit 64
fi

work=$(mktemp -d /tmp/tbgw-test-deb.XXXXXX)
chmod 0755 "$work"                        # apt's _apt user reads local .debs
cp "$1" "$work/"
deb=$work/$(basename "$1")
chmod 0644 "$deb"
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%%-*}
unit=/lib/systemd/system/tbgw.service
wants=/etc/systemd/system/multi-user.target.wants/tbgw.service
conf=/etc/tbgw.conf
state=/var/lib/tbgw

n=0 checks=0 new_pkgs="" user_existed=no
getent passwd tbgw >/dev/null && user_existed=yes

step()  { n=$((n + 1)); printf '\n== %02d %s\n' "$n" "$*"; }
pass()  { checks=$((checks + 1)); printf '   ok    %s\n' "$*"; }
fail()  { printf '   FAIL  %s\n' "$*"; exit 1; }
info()  { printf '   info  %s\n' "$*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
show()  { sed 's/^/   | /' "$@"; }

cleanup() {
    local rc=$?
    set +e
    if [ $rc != 0 ]; then printf '\ntest-deb: FAILED at step %02d (%d checks passed)\n' "$n" "$checks"; fi
    if dpkg-query -W -f '${db:Status-Status}' tbgw 2>/dev/null | grep -qv '^not-installed$'; then
        echo "test-deb: cleanup: purging tbgw"
        dpkg --purge tbgw >/dev/null 2>&1
    fi
    if [ -n "$new_pkgs" ] && [ "${deps_purged:-no}" = no ]; then
        echo "test-deb: cleanup: purging what the test installed:$new_pkgs"
        # dpkg, not apt: it refuses (instead of removing more) if anything else needs them.
        dpkg --purge $new_pkgs >/dev/null 2>&1
    fi
    if [ $user_existed = no ] && getent passwd tbgw >/dev/null; then
        echo "test-deb: cleanup: deleting the user and group tbgw the test created"
        userdel tbgw 2>/dev/null; getent group tbgw >/dev/null && groupdel tbgw 2>/dev/null
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

# apt-get with the output shown indented and kept in $work/apt.log; stdin is /dev/null,
# so a conffile question from dpkg fails the step instead of waiting.
apt_run() {
    local rc=0
    apt-get -q -y -o Dpkg::Use-Pty=0 "$@" < /dev/null > "$work/apt.log" 2>&1 || rc=$?
    grep -vE '^(Reading |Building |Reading state|\(Reading database|Selecting previously|Preparing to unpack)' \
        "$work/apt.log" | show
    return $rc
}

# Messages that mean a maintainer script tried to talk to a systemd that is not there.
no_systemd_noise() {
    ! grep -nE 'System has not been booted with systemd|Failed to connect to bus|Failed to (start|stop|restart|reload|enable)|tbgw.*(error|warning)' \
        "$work/apt.log"
}

# Paths of the system, for the comparison after the purge (volatile places left out).
snapshot() {
    local d roots=""
    for d in /etc /lib /usr /var /opt /srv; do [ -d "$d" ] && [ ! -L "$d" ] && roots="$roots $d"; done
    find $roots -xdev \( -path /var/cache/apt -o -path /var/lib/apt/lists -o -path /var/log \
        -o -path /var/tmp -o -path /var/cache/man -o -path /var/cache/debconf \
        -o -path /var/cache/ldconfig \) -prune -o -print 2>/dev/null | sort
}

mode_of()  { stat -c '%a %U %G' "$1"; }
installed_version() { dpkg-query -W -f '${Version}' tbgw 2>/dev/null; }
status_of() { dpkg-query -W -f '${db:Status-Abbrev}' tbgw 2>/dev/null | tr -d ' '; }

# repack DEB VERSION OUT [LINE]: the same package as VERSION, with LINE appended to the
# shipped /etc/tbgw.conf if given (conffiles are not in md5sums: nothing else to update).
repack() {
    local d
    d=$(mktemp -d "$work/repack.XXXXXX")
    dpkg-deb -R "$1" "$d/pkg"
    sed -i "s/^Version: .*/Version: $2/" "$d/pkg/DEBIAN/control"
    if [ -n "${4:-}" ]; then printf '%s\n' "$4" >> "$d/pkg/etc/tbgw.conf"; fi
    dpkg-deb --root-owner-group -b "$d/pkg" "$3" >/dev/null
    chmod 0644 "$3"
    rm -rf "$d"
}

expect_installed() { # VERSION
    check "dpkg: tbgw $1 installed (ii)" test "$(status_of)" = ii -a "$(installed_version)" = "$1"
}
expect_conf_kept() {
    check "$conf keeps the local edit" grep -qx '// local edit by test-deb.sh' "$conf"
    check "$conf still sets log.level debug" grep -q 'level = "debug"' "$conf"
    check "$conf is 0640 root:tbgw" test "$(mode_of "$conf")" = "640 root tbgw"
    check "$state/spool.db is kept" test -s "$state/spool.db"
}

# ---------------------------------------------------------------------------------------
step "environment"
info "$(. /etc/os-release && echo "$PRETTY_NAME"), $(dpkg --print-architecture), in a chroot: $in_chroot"
info "package: $(basename "$deb"), version $version"
if [ -d /run/systemd/system ]; then
    systemd_running=yes
    info "systemd is running: the maintainer scripts start and restart tbgw.service"
else
    systemd_running=no
    info "systemd is not running (PID 1: $(ps -o comm= -p 1 2>/dev/null || echo '?')):" \
         "the maintainer scripts must skip systemctl and still enable the unit"
fi
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt-get install systemd)"
pass "systemd-analyze is available ($(systemd-analyze --version | head -1))"
snapshot > "$work/before"
pass "file list taken ($(wc -l < "$work/before") paths)"

step "install $(basename "$deb")"
if ! apt-get -s install "$deb" > "$work/sim.log" 2>&1; then
    info "apt cannot resolve the dependencies: apt-get update"
    apt-get -q update > "$work/update.log" 2>&1 || show "$work/update.log"
    apt-get -s install "$deb" > "$work/sim.log" 2>&1 || { show "$work/sim.log"; fail "apt-get -s install"; }
fi
new_pkgs=$(awk '/^Inst / && $2 != "tbgw" { printf " %s", $2 }' "$work/sim.log")
info "dependencies to install:${new_pkgs:- none}"
check "apt-get install ./$(basename "$deb")" apt_run install "$deb"
expect_installed "$version"
check "no maintainer script tried to reach systemd or failed" no_systemd_noise

step "files"
for f in /usr/sbin/tbgw /usr/sbin/tbgwctl; do check "$f is executable" test -x "$f"; done
for m in man8/tbgw.8.gz man5/tbgw.conf.5.gz man8/tbgwctl.8.gz; do
    check "/usr/share/man/$m" test -s "/usr/share/man/$m"
done
for f in copyright changelog.gz README.Debian examples/tbgw.conf.example; do
    check "/usr/share/doc/tbgw/$f" test -s "/usr/share/doc/tbgw/$f"
done
for t in carlo-gavazzi-em21 carlo-gavazzi-em24 eastron-sdm120 eastron-sdm230 eastron-sdm630 \
         eastron-sdm72d-m schneider-iem3000 xy-md02; do
    check "/usr/share/tbgw/templates/$t.conf" test -s "/usr/share/tbgw/templates/$t.conf"
done
check "$unit" test -s "$unit"
check "$conf is a conffile" sh -c "dpkg-query -W -f '\${Conffiles}' tbgw | grep -q '^ $conf '"
check "$conf is the documented default (no bus enabled)" grep -qx 'buses = ();' "$conf"

step "user, group, permissions"
IFS=: read -r _ _ uid gid _ home shell <<< "$(getent passwd tbgw)" || fail "no user tbgw"
check "user tbgw is a system user (uid $uid)" test "$uid" -ge 100 -a "$uid" -lt 1000
check "group tbgw is its primary group" test "$(getent group "$gid" | cut -d: -f1)" = tbgw
check "home is $state, shell $shell" test "$home" = "$state" -a "$shell" = /usr/sbin/nologin
check "tbgw is in group dialout ($(id -nG tbgw))" sh -c 'id -nG tbgw | tr " " "\n" | grep -qx dialout'
check "$conf is 0640 root:tbgw ($(mode_of "$conf"))" test "$(mode_of "$conf")" = "640 root tbgw"
check "a user outside group tbgw cannot read $conf" \
    sh -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups cat $conf >/dev/null 2>&1"

step "run"
out=$(tbgw --version)
check "tbgw --version: $out" test "$out" = "tbgw $upstream"
out=$(tbgwctl --version)
check "tbgwctl --version: $out" test "$out" = "tbgwctl $upstream"
tbgw --check-config > "$work/check.log" 2>&1 || { show "$work/check.log"; fail "tbgw --check-config"; }
show "$work/check.log"
pass "tbgw --check-config (root, $conf)"
setpriv --reuid=tbgw --regid=tbgw --init-groups tbgw --check-config -c "$conf" > "$work/check.log" 2>&1 ||
    { show "$work/check.log"; fail "tbgw --check-config as user tbgw"; }
pass "tbgw --check-config as user tbgw (reads $conf through its group)"

step "systemd unit"
check "enabled: $wants -> $unit" test "$(readlink "$wants")" = "$unit"
if systemd-analyze verify "$unit" > "$work/verify.log" 2>&1; then
    show "$work/verify.log"
    check "systemd-analyze verify $unit: no complaint about tbgw" \
        sh -c "! grep -i tbgw '$work/verify.log'"
else
    show "$work/verify.log"; fail "systemd-analyze verify $unit"
fi
systemd-analyze security --offline=yes "$unit" > "$work/security.log" 2>&1 ||
    { show "$work/security.log"; fail "systemd-analyze security --offline=yes"; }
# The settings that add to the exposure ("-" rows), then the total.
awk '$1 == "-" { printf "%-40s %s\n", $2, $NF }' "$work/security.log" | show
exposure=$(sed -n 's/.*Overall exposure level for tbgw.service: \([0-9.]*\).*/\1/p' "$work/security.log")
show <<< "$(grep 'Overall exposure level' "$work/security.log")"
check "systemd-analyze security --offline=yes: exposure $exposure <= 2.0" \
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 2.0) }'
if [ $systemd_running = yes ]; then
    info "tbgw.service: $(systemctl is-enabled tbgw), $(systemctl is-active tbgw)"
fi

step "local changes: edit $conf, state in $state"
sed -i 's/level = "info";/level = "debug";/' "$conf"
printf '%s\n' '// local edit by test-deb.sh' >> "$conf"
if [ $systemd_running = no ]; then     # what StateDirectory= and a running tbgw would leave
    install -d -o tbgw -g tbgw -m 0750 "$state"
    echo "spool" > "$state/spool.db"; echo "{}" > "$state/credentials.json"
    chown tbgw:tbgw "$state"/*; chmod 0600 "$state/credentials.json"
fi
tbgw --check-config > "$work/check.log" 2>&1 || { show "$work/check.log"; fail "check-config after the edit"; }
pass "edited $conf is valid; $state holds $(ls "$state" | tr '\n' ' ')"

step "reinstall the same version"
check "apt-get install --reinstall ./$(basename "$deb")" apt_run install --reinstall "$deb"
expect_installed "$version"
expect_conf_kept
check "no maintainer script tried to reach systemd or failed" no_systemd_noise

step "upgrade to $version+upgradetest1 (a repacked copy)"
up1=$work/tbgw_${version}+upgradetest1_$(dpkg-deb -f "$deb" Architecture).deb
repack "$deb" "$version+upgradetest1" "$up1"
check "apt-get install ./$(basename "$up1")" apt_run install "$up1"
check "apt upgraded (not installed anew)" grep -q "Unpacking tbgw ($version+upgradetest1) over ($version)" "$work/apt.log"
expect_installed "$version+upgradetest1"
expect_conf_kept
check "no $conf.dpkg-* left behind" sh -c "! ls $conf.dpkg-* 2>/dev/null"
check "still enabled" test "$(readlink "$wants")" = "$unit"

step "upgrade to $version+upgradetest2, whose shipped $conf changed (--force-confold)"
up2=$work/tbgw_${version}+upgradetest2_$(dpkg-deb -f "$deb" Architecture).deb
repack "$deb" "$version+upgradetest2" "$up2" '// changed in upgradetest2'
check "apt-get -o Dpkg::Options::=--force-confold install ./$(basename "$up2")" \
    apt_run -o Dpkg::Options::=--force-confold install "$up2"
expect_installed "$version+upgradetest2"
expect_conf_kept
check "the new default is beside it as $conf.dpkg-dist" grep -qx '// changed in upgradetest2' "$conf.dpkg-dist"

step "remove"
check "apt-get remove tbgw" apt_run remove tbgw
check "dpkg: tbgw removed, configuration kept (rc)" test "$(status_of)" = rc
for f in /usr/sbin/tbgw /usr/sbin/tbgwctl "$unit"; do check "$f is gone" test ! -e "$f"; done
expect_conf_kept
check "no maintainer script tried to reach systemd or failed" no_systemd_noise

step "purge"
check "apt-get purge tbgw" apt_run purge tbgw
check "dpkg: tbgw not installed" test -z "$(installed_version)"
for f in "$conf" "$conf.dpkg-dist" "$state" "$unit" "$wants"; do
    check "$f is gone" test ! -e "$f" -a ! -L "$f"
done
check "no deb-systemd-helper state for tbgw" \
    sh -c '! find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked -name "*tbgw*" 2>/dev/null | grep -q .'
check "user tbgw remains (Debian policy; see README.Debian)" sh -c 'getent passwd tbgw >/dev/null'

step "install again over the existing user, purge again"
check "apt-get install ./$(basename "$deb")" apt_run install "$deb"
expect_installed "$version"
check "$conf is 0640 root:tbgw" test "$(mode_of "$conf")" = "640 root tbgw"
check "tbgw is in group dialout" sh -c 'id -nG tbgw | tr " " "\n" | grep -qx dialout'
check "apt-get purge tbgw" apt_run purge tbgw
check "$conf and $state are gone" test ! -e "$conf" -a ! -e "$state"

step "nothing left behind"
if [ -n "$new_pkgs" ]; then
    dpkg --purge $new_pkgs > "$work/dpkg.log" 2>&1 || { show "$work/dpkg.log"; fail "dpkg --purge$new_pkgs"; }
    grep -v '^(Reading database' "$work/dpkg.log" | show
    pass "dpkg --purge what the test installed:$new_pkgs"
fi
deps_purged=yes
snapshot > "$work/after"
comm -13 "$work/before" "$work/after" > "$work/new-paths"
comm -23 "$work/before" "$work/after" > "$work/gone-paths"
if [ -s "$work/new-paths" ]; then info "paths that did not exist before the test:"; show "$work/new-paths"; fi
if [ -s "$work/gone-paths" ]; then info "paths that existed before the test and are gone:"; show "$work/gone-paths"; fi
check "no path of tbgw is left" sh -c "! grep -i tbgw '$work/new-paths'"

printf '\ntest-deb: PASS (%d steps, %d checks)\n' "$n" "$checks"
