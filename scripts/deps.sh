#!/usr/bin/env bash
# Install everything a fresh Debian 12 machine needs to build, run and test
# aggd. This is the ONE place the package list lives; README points here.
#
#   scripts/deps.sh           install what is missing (no-op when complete)
#   scripts/deps.sh --list    print the package list, one per line
#
# AGGD_SKIP_DEPS=1 skips the whole thing (e.g. on a machine managed otherwise).
set -euo pipefail

PACKAGES=(
    # toolchain: gcc for the release build, clang for the sanitizer build
    build-essential cmake pkg-config clang
    # clang's ASan/UBSan runtimes: only a Recommends of clang, so
    # --no-install-recommends would leave -fsanitize=address unable to link
    libclang-rt-dev
    # libraries aggd links against
    libevent-dev libpq-dev libyajl-dev libzstd-dev libsodium-dev libssl-dev
    zlib1g-dev libcrypt-dev
    # unit tests
    libcmocka-dev
    # a real PostgreSQL server for integration tests and local runs
    postgresql postgresql-client postgresql-contrib
    # tools the scripts and integration tests call (logger, runuser, ss, ps,
    # zstd, a fake SMTP server, a Python DB client)
    curl bsdutils util-linux python3 python3-psycopg2 python3-aiosmtpd python3-yaml zstd
    # TLS tests: throw-away certificates and s_client; rsyslog omfwd with gtls
    openssl rsyslog rsyslog-gnutls
    ca-certificates procps iproute2 git
    # zone files for listen.syslog_3164_timezone and its tests (not in a minimal image);
    # dpkg-buildflags for the build with Debian's hardening flags
    tzdata dpkg-dev
    # scripts/package.sh: dpkg-buildpackage with debhelper, lintian; its install
    # check runs the package's postinst, which calls systemd-sysusers and
    # systemd-tmpfiles (package systemd; nothing is started); man for
    # systemd-analyze verify, which opens the units' Documentation=man:aggd(8)
    debhelper lintian systemd man-db
)

if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi
if [[ $# -gt 0 ]]; then
    echo "aggd: usage: scripts/deps.sh [--list]" >&2
    exit 2
fi

if [[ ${AGGD_SKIP_DEPS:-0} == 1 ]]; then
    echo "aggd: AGGD_SKIP_DEPS=1, not checking system packages"
    exit 0
fi

# One dpkg-query for all packages keeps re-runs fast; unknown packages make it
# exit non-zero and print nothing for them, which simply counts as missing.
declare -A installed=()
while read -r pkg abbrev; do
    [[ $abbrev == ii* ]] && installed[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for pkg in "${PACKAGES[@]}"; do
    [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "aggd: all ${#PACKAGES[@]} system packages already installed"
    exit 0
fi

echo "aggd: installing ${#missing[@]} missing package(s): ${missing[*]}"

as_root=()
if [[ $EUID -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "aggd: not root and sudo is not installed; as root, run:" >&2
        echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    as_root=(sudo)
fi

# noninteractive: CI has no stdin, and tzdata & co. would otherwise prompt;
# passed through env because sudo drops the caller's environment.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
echo "aggd: system packages installed"
