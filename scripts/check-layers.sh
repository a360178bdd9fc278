#!/bin/sh
# Fails on any #include that points up or sideways between the source folders.
# Layers (STYLE.md "Layers"): src -> api -> rules -> store -> core, src -> ingest -> core.
# Usage: scripts/check-layers.sh [repo root]; exit 1 lists every offending line.
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# The folders each folder may include besides itself.
allowed() {
    case $1 in
        core) echo "" ;;
        ingest) echo "core" ;;
        store) echo "core" ;;
        rules) echo "store core" ;;
        api) echo "rules store core" ;;
        src) echo "api rules store ingest core" ;;
    esac
}

bad=0
for dir in core ingest store rules api src; do
    ok=$(allowed "$dir")
    for f in "$dir"/*.c "$dir"/*.h "$dir"/*.in; do
        [ -e "$f" ] || continue
        # "folder/name.h" includes of our own folders only; system headers use <>.
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z]*/' "$f" |
            sed 's/^\([0-9]*\):.*"\([a-z]*\)\/.*/\1 \2/' |
            while read -r line to; do
                [ "$to" = "$dir" ] && continue
                case " $ok " in *" $to "*) continue ;; esac
                echo "$f:$line: $dir/ includes $to/ ($(sed -n "${line}p" "$f" | tr -s ' '))"
            done
    done
done >"${TMPDIR:-/tmp}/aggd-layers.$$"

if [ -s "${TMPDIR:-/tmp}/aggd-layers.$$" ]; then
    cat "${TMPDIR:-/tmp}/aggd-layers.$$" >&2
    echo "check-layers: $(wc -l <"${TMPDIR:-/tmp}/aggd-layers.$$") include(s) against the layers" >&2
    bad=1
else
    echo "check-layers: ok (src -> api -> rules -> store -> core, src -> ingest -> core)"
fi
rm -f "${TMPDIR:-/tmp}/aggd-layers.$$"
exit $bad
