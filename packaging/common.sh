# Shared by packaging/build-debs.sh and packaging/qemu-check.sh (sourced, not run).
#
# Every build and test runs in a fresh Debian 12 chroot made by mmdebstrap from the
# Debian mirror: nothing is installed on the machine itself but the tools below, and a
# missing Build-Depends fails the build instead of being hidden by the host.

TBGW_SUITE=${TBGW_SUITE:-bookworm}
TBGW_MIRROR=${TBGW_MIRROR:-http://deb.debian.org/debian}
TBGW_SECURITY_MIRROR=${TBGW_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
TBGW_KEYRING=${TBGW_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

say()  { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# tbgw_need_tools CMD:PACKAGE...: apt-get install the packages whose command is missing.
tbgw_need_tools() {
    local missing="" pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "missing tools (${missing# }): apt-get install them, or run as root"
    say "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null ||
        warn "apt-get update reported errors (installing anyway)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
}

# tbgw_suite_ok MIRROR SUITE ARCH...: can apt fetch SUITE's package indexes for every
# ARCH, with their signatures and hashes checked? Runs apt on a private, empty state
# directory: the machine's own apt configuration and lists are not touched.
tbgw_suite_ok() {
    local mirror=$1 suite=$2; shift 2
    local d rc archs
    archs=$(echo "$*" | tr ' ' ',')
    d=$(mktemp -d)
    mkdir -p "$d/etc/apt/apt.conf.d" "$d/etc/apt/preferences.d" "$d/etc/apt/sources.list.d" \
             "$d/var/lib/apt/lists/partial" "$d/var/cache/apt/archives/partial" "$d/var/lib/dpkg"
    : > "$d/var/lib/dpkg/status"
    : > "$d/apt.conf"
    echo "deb [signed-by=$TBGW_KEYRING] $mirror $suite main" > "$d/etc/apt/sources.list"
    APT_CONFIG="$d/apt.conf" apt-get -q -o Dir="$d" -o Dir::State::status="$d/var/lib/dpkg/status" \
        -o APT::Architecture="$1" -o APT::Architectures="$archs" \
        -o APT::Sandbox::User=root -o Acquire::Languages=none update > "$d/log" 2>&1
    rc=$?
    if [ $rc != 0 ]; then grep -E '^(E|W):' "$d/log" | sed 's/^/    /' >&2; fi
    rm -rf "$d"
    return $rc
}

# tbgw_sources ARCH...: the mirror lines (one per line) for a chroot with these
# architectures: SUITE, SUITE-updates and, when the mirror serves consistent indexes of
# it for all of ARCH, SUITE-security. Multi-Arch: same libraries (libssl-dev:amd64 and
# libssl-dev:armhf) must come in the same version for every architecture, so the
# security suite is used for all of them or for none.
tbgw_sources() {
    echo "deb [signed-by=$TBGW_KEYRING] $TBGW_MIRROR $TBGW_SUITE main"
    echo "deb [signed-by=$TBGW_KEYRING] $TBGW_MIRROR $TBGW_SUITE-updates main"
    if tbgw_suite_ok "$TBGW_SECURITY_MIRROR" "$TBGW_SUITE-security" "$@"; then
        echo "deb [signed-by=$TBGW_KEYRING] $TBGW_SECURITY_MIRROR $TBGW_SUITE-security main"
    else
        warn "$TBGW_SECURITY_MIRROR $TBGW_SUITE-security has no consistent index for" \
             "$* (see above): this chroot uses $TBGW_SUITE and $TBGW_SUITE-updates only"
    fi
}

# tbgw_deb_arch DEB: the .deb's architecture.
tbgw_deb_arch() { dpkg-deb -f "$1" Architecture; }

# tbgw_deb_depends DEB: the package names of the .deb's Depends, comma-separated (the
# first of each alternative, versions dropped).
tbgw_deb_depends() {
    dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' |
        grep -v '^$' | paste -sd, -
}

# tbgw_now: seconds since the epoch, with decimals (for timings).
tbgw_now() { date +%s.%N; }
tbgw_since() { awk -v a="$1" -v b="$(tbgw_now)" 'BEGIN { printf "%.1f", b - a }'; }
