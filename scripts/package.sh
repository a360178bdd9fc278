#!/usr/bin/env bash
# Build the Debian package aggd_<version>_<arch>.deb with dpkg-buildpackage and
# debhelper (debian/), check it with lintian, and optionally install it into an
# empty root and run the installed binary.
#
#   scripts/package.sh [--out DIR] [--install-check] [--no-lintian]
#     --out DIR         where the .deb (and .changes, .buildinfo, source) go;
#                       default build-deb/
#     --install-check   also install the .deb with dpkg into a fresh, empty root,
#                       run `aggd version` and `aggd config check` from there,
#                       and purge it again (what CI does; see below)
#     --no-lintian      skip lintian (errors and warnings fail the run otherwise)
#
# The version is CMakeLists.txt's project(aggd VERSION ...); debian/changelog's
# newest entry must carry the same version, or this stops and says so. The build
# runs in a copy of the tree (dpkg-buildpackage writes next to the source
# directory and into debian/), so the checkout stays clean.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$ROOT/build-deb
install_check=0
lintian=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --out)
        [[ $# -ge 2 ]] || { echo "aggd: --out needs a directory" >&2; exit 2; }
        out=$(realpath -m -- "$2")
        shift 2
        ;;
    --install-check) install_check=1; shift ;;
    --no-lintian) lintian=0; shift ;;
    -h | --help)
        sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *)
        echo "aggd: unknown option: $1 (try --help)" >&2
        exit 2
        ;;
    esac
done

for tool in dpkg-buildpackage dh dpkg-parsechangelog; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "aggd: $tool is missing; scripts/deps.sh installs it" >&2; exit 1; }
done
if [[ $lintian -eq 1 ]] && ! command -v lintian >/dev/null 2>&1; then
    echo "aggd: lintian is missing; scripts/deps.sh installs it (or pass --no-lintian)" >&2
    exit 1
fi

version=$(sed -nE 's/^project\(aggd VERSION ([0-9][0-9.]*)[ )].*/\1/p' "$ROOT/CMakeLists.txt")
deb_version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -SVersion)
if [[ -z $version ]]; then
    echo "aggd: no project(aggd VERSION ...) in CMakeLists.txt" >&2
    exit 1
fi
if [[ $deb_version != "$version" ]]; then
    echo "aggd: CMakeLists.txt says version $version, debian/changelog says $deb_version;" \
        "add a changelog entry: dch -v $version" >&2
    exit 1
fi
man_version=$(sed -nE 's/^\.TH AGGD 8 "[^"]*" "aggd ([^"]*)".*/\1/p' "$ROOT/docs/aggd.8")
if [[ $man_version != "$version" ]]; then
    echo "aggd: docs/aggd.8 says version '$man_version', CMakeLists.txt $version: update its .TH line" >&2
    exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=aggd_${version}_${arch}.deb

work=$(mktemp -d "${TMPDIR:-/tmp}/aggd-pkg.XXXXXX")
cleanup() {
    # dpkg leaves a few read-only directories in the install root.
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The source package is the tree without build outputs, local state and git.
src=$work/aggd-$version
mkdir "$src"
tar -C "$ROOT" --exclude=./.git --exclude='./build*' --exclude=./var --exclude=./dist \
    --exclude='__pycache__' --exclude=./debian/build --exclude=./debian/aggd \
    --exclude=./debian/.debhelper -cf - . | tar -C "$src" -xf -
# The copy has no .git: GIT_DIR lets CMakeLists.txt still read the commit for
# `aggd version` (unset outside a git checkout: the commit reads "unknown").
if git_dir=$(git -C "$ROOT" rev-parse --absolute-git-dir 2>/dev/null); then
    export GIT_DIR=$git_dir
fi

echo "aggd: building $deb in ${src}/"
(
    cd "$src"
    DEB_BUILD_OPTIONS="parallel=${AGGD_JOBS:-2}${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}" \
        dpkg-buildpackage -us -uc --build=full
) >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "aggd: dpkg-buildpackage failed (the log's end is above)" >&2
    exit 1
}
unset GIT_DIR
mkdir -p "$out"
changes=aggd_${version}_${arch}.changes
# Everything the .changes lists (source, .deb, the -dbgsym .ddeb, .buildinfo).
cp "$work"/aggd_"$version"[._]* "$work"/aggd-dbgsym_"$version"_* "$out/"
echo "aggd: built $out/$deb"
dpkg-deb --info "$out/$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  \1:/p'

if [[ $lintian -eq 1 ]]; then
    # The .changes covers the source package (debian/) and the .deb. Overrides,
    # each with its reason, are in debian/aggd.lintian-overrides and
    # debian/source/lintian-overrides.
    echo "aggd: lintian $changes"
    if ! lintian --fail-on error,warning --display-info "$out/$changes"; then
        echo "aggd: lintian found errors or warnings (above)" >&2
        exit 1
    fi
    echo "aggd: lintian: no errors or warnings"
fi

[[ $install_check -eq 1 ]] || exit 0

# --- install into an empty root --------------------------------------------
# A real `dpkg -i` into $iroot with its own, empty package database:
#   --force-script-chrootless  runs the maintainer scripts on this host with
#                              DPKG_ROOT=$iroot instead of chrooting into a root
#                              that has no shell; debhelper's snippets honour it
#                              (systemd-sysusers --root, systemd-tmpfiles --root,
#                              deb-systemd-helper), so the host is not touched;
#   --force-not-root           lets a developer run this without root;
#   --force-depends            the empty root has none of the shared libraries
#                              aggd depends on; the installed binary runs with
#                              the host's. That the host satisfies every
#                              dependency is checked first with apt-get -s.
iroot=$work/root
echo "aggd: installing $deb into an empty root ($iroot)"
sim=$(apt-get -s -o Debug::NoLocking=1 install "$out/$deb" 2>/dev/null |
    grep -E '^Inst ' || true)
if [[ -z $sim ]] || grep -qv '^Inst aggd ' <<<"$sim"; then
    echo "aggd: installing the .deb on this host would need other packages:" >&2
    printf '%s\n' "${sim:-(apt-get -s failed)}" >&2
    exit 1
fi
mkdir -p "$iroot/var/lib/dpkg/updates" "$iroot/var/lib/dpkg/info" "$iroot/var/log"
: >"$iroot/var/lib/dpkg/status"
dpkg_root=(dpkg --root="$iroot" --log="$iroot/var/log/dpkg.log" --force-not-root
    --force-script-chrootless)
"${dpkg_root[@]}" --force-depends -i "$out/$deb"

status=$(dpkg-query --admindir="$iroot/var/lib/dpkg" -W -f='${db:Status-Abbrev}' aggd)
[[ $status == ii* ]] || { echo "aggd: dpkg says aggd is '$status', not installed" >&2; exit 1; }
conffiles=$(dpkg-query --admindir="$iroot/var/lib/dpkg" -W -f='${Conffiles}' aggd)
grep -q ' /etc/aggd/aggd.conf ' <<<"$conffiles" ||
    { echo "aggd: /etc/aggd/aggd.conf is not a conffile: $conffiles" >&2; exit 1; }
for f in usr/bin/aggd etc/aggd/aggd.conf lib/systemd/system/aggd.service \
    lib/systemd/system/aggd.socket usr/lib/sysusers.d/aggd.conf usr/lib/tmpfiles.d/aggd.conf \
    usr/share/man/man8/aggd.8.gz usr/share/doc/aggd/copyright usr/share/doc/aggd/changelog.gz; do
    [[ -e $iroot/$f ]] || { echo "aggd: the package did not install /$f" >&2; exit 1; }
done
# The postinst ran: systemd-sysusers made the user in the root's passwd, and
# systemd-tmpfiles the state directories (owned by aggd only when run as root).
grep -q '^aggd:' "$iroot/etc/passwd" ||
    { echo "aggd: postinst did not create the aggd user in $iroot/etc/passwd" >&2; exit 1; }
for d in var/lib/aggd/spool var/lib/aggd/archive; do
    [[ -d $iroot/$d ]] || { echo "aggd: postinst did not create /$d" >&2; exit 1; }
done

# The installed binary, the installed configuration, nothing from the caller's
# environment (AGGD_* would override the file).
clean_env=(env)
while read -r var; do clean_env+=(-u "$var"); done < <(compgen -e | grep '^AGGD_' || true)
echo "aggd: $iroot/usr/bin/aggd version"
"${clean_env[@]}" "$iroot/usr/bin/aggd" version
echo "aggd: $iroot/usr/bin/aggd config check -c $iroot/etc/aggd/aggd.conf"
check=$("${clean_env[@]}" "$iroot/usr/bin/aggd" config check -c "$iroot/etc/aggd/aggd.conf")
grep -E '^(spool|archive)\.dir' <<<"$check"
grep -qE '^spool\.dir = /var/lib/aggd/spool +# file' <<<"$check" ||
    { echo "aggd: config check did not read spool.dir from the installed file" >&2; exit 1; }

"${dpkg_root[@]}" --purge aggd
left=$(find "$iroot/etc" "$iroot/usr" "$iroot/lib" -type f 2>/dev/null | sed "s|^$iroot||" |
    grep aggd || true)
if [[ -n $left ]]; then
    echo "aggd: files left after dpkg --purge: $left" >&2
    exit 1
fi
echo "aggd: package install check: OK (installed, ran, purged)"
