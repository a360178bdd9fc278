#!/usr/bin/env bash
# THE test command: installs dependencies, builds with gcc (build/) and with
# clang + ASan/UBSan (build-asan/), starts a throw-away PostgreSQL cluster and
# runs every ctest test against it in both builds. CI runs exactly this.
#
#   scripts/test.sh [--quick] [--no-deps]
#     --quick     skip the sanitizer build, fuzzing and the Debian package
#     --no-deps   do not run scripts/deps.sh (same as AGGD_SKIP_DEPS=1)
#
# An integration test that skips (exit 77, e.g. no database) counts as a
# failure here: this script always provides the database.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_SH=$ROOT/scripts/pg.sh
JOBS=${AGGD_JOBS:-2}

quick=0
deps=1
for arg in "$@"; do
    case $arg in
    --quick) quick=1 ;;
    --no-deps) deps=0 ;;
    -h | --help)
        sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *)
        echo "aggd: unknown option: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

cd "$ROOT"

if [[ $deps -eq 1 ]]; then
    "$ROOT/scripts/deps.sh"
fi

# name|build dir|compiler|build type|extra cmake args
builds=("gcc|build|gcc|RelWithDebInfo|")
if [[ $quick -eq 0 ]]; then
    builds+=("clang+asan|build-asan|clang|Debug|-DAGGD_SANITIZE=ON")
fi

# Integration tests import Debian's python3-psycopg2 and python3-aiosmtpd; a
# python3 from a version manager (pyenv, conda) earlier on PATH lacks them, so
# hand CMake the first python3 on PATH that has both.
common=()
for py in $(type -ap python3); do
    if "$py" -c 'import psycopg2, aiosmtpd' >/dev/null 2>&1; then
        common+=("-DPYTHON3=$py")
        break
    fi
done

for b in "${builds[@]}"; do
    IFS='|' read -r name dir cc btype extra <<<"$b"
    echo "aggd: building $name in $dir/"
    # $extra is empty or a single -D option, never containing spaces.
    # shellcheck disable=SC2086
    cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE="$btype" \
        -DAGGD_WERROR=ON "${common[@]}" $extra
    cmake --build "$ROOT/$dir" -j"$JOBS"
done

# Compile-only builds, warnings as errors: what users and packagers build. Release
# with gcc and clang and Debug with gcc (other optimisations, other warnings), and Debian's hardening
# flags as dpkg-buildpackage passes them (build type None: the flags are all theirs).
compile_only() {
    local name=$1 dir=$2
    shift 2
    echo "aggd: compiling $name in $dir/ (no tests run)"
    if cmake -S "$ROOT" -B "$ROOT/$dir" -DAGGD_WERROR=ON "${common[@]}" "$@" >/dev/null &&
        cmake --build "$ROOT/$dir" -j"$JOBS" >"$LOGDIR/build-$dir.log" 2>&1; then
        summaries+=("aggd: $name build: OK, no warnings")
    else
        tail -n 40 "$LOGDIR/build-$dir.log" >&2 || true
        summaries+=("aggd: $name build: FAILED (warnings are errors)")
        failed=1
    fi
}

# --- throw-away PostgreSQL cluster, always torn down -----------------------
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/aggd-pg.XXXXXX")
# 755 so the unprivileged cluster owner (see pg.sh) and test helpers reach it.
chmod 755 "$PGDIR"
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/aggd-test-logs.XXXXXX")

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$PG_SH" stop "$PGDIR" >/dev/null 2>&1 || true
    rm -rf "$PGDIR" "$LOGDIR"
    exit "$rc"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap runs with a failing status.
trap 'exit 130' INT
trap 'exit 143' TERM

"$PG_SH" init "$PGDIR"
"$PG_SH" start "$PGDIR"
AGGD_TEST_DATABASE_URL=$("$PG_SH" url "$PGDIR" postgres)
export AGGD_TEST_DATABASE_URL
# Integration tests use it to build private clusters (e.g. crash/restart tests).
export AGGD_TEST_PG_SH=$PG_SH
echo "aggd: test database: $AGGD_TEST_DATABASE_URL"

# --- tests -----------------------------------------------------------------
failed=0
summaries=()
total_passed=0
total_failed=0

# run_ctest NAME DIR [VAR=VALUE...]: runs ctest, records a summary line.
run_ctest() {
    local name=$1 dir=$2 log rc line skipped disabled nfail ntotal npass nbad
    shift 2
    log=$LOGDIR/ctest-$dir.log
    echo "aggd: running tests of $name ($dir/)"
    # --no-tests=error: a build that registers no tests must not look green.
    if env "$@" ctest --test-dir "$ROOT/$dir" --output-on-failure --no-tests=error \
        -j"$JOBS" 2>&1 | tee "$log"; then
        rc=0
    else
        rc=$?
    fi
    # ctest counts a skipped test (exit 77) as passed and leaves disabled
    # tests out of its total; both are failures here. A "Not Run" test whose
    # executable is missing is already among ctest's failures.
    skipped=$(grep -cE '\*\*\*Skipped' "$log" || true)
    disabled=$(grep -cE '\*\*\*Not Run \(Disabled\)' "$log" || true)
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [[ -z $line ]]; then
        if grep -q "No tests were found" "$log"; then
            summaries+=("aggd: $name: FAILED: no tests are registered")
        else
            summaries+=("aggd: $name: FAILED (ctest exit $rc, no test summary)")
        fi
        failed=1
        return 0
    fi
    read -r _ _ _ nfail _ _ _ _ ntotal <<<"$line"
    npass=$((ntotal - nfail - skipped))
    nbad=$((nfail + skipped + disabled))
    total_passed=$((total_passed + npass))
    total_failed=$((total_failed + nbad))
    if [[ $rc -ne 0 || $nbad -ne 0 ]]; then
        failed=1
        summaries+=("aggd: $name: FAILED: $npass passed, $nfail failed, $((skipped + disabled)) skipped or disabled (counted as failures)")
        if [[ $((skipped + disabled)) -ne 0 ]]; then
            echo "aggd: $name: these tests did not run (a skip is a failure here):" >&2
            grep -E '\*\*\*(Skipped|Not Run \(Disabled\))' "$log" >&2 || true
        fi
    else
        summaries+=("aggd: $name: OK: $npass passed, 0 failed")
    fi
}

# Includes point one way between the source folders (STYLE.md "Layers").
if "$ROOT"/scripts/check-layers.sh "$ROOT"; then
    summaries+=("aggd: layers: OK")
else
    summaries+=("aggd: layers: FAILED: an include points against the layers (listed above)")
    failed=1
fi

if [[ $quick -eq 0 ]]; then
    compile_only "gcc Release" build-release-gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release
    compile_only "clang Release" build-release-clang -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=Release
    # gcc's -O0 analysis warns where -O2 does not (format truncation).
    compile_only "gcc Debug" build-debug-gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug
    hardening=(env DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get)
    CFLAGS="$("${hardening[@]}" CFLAGS) $("${hardening[@]}" CPPFLAGS)" \
        LDFLAGS="$("${hardening[@]}" LDFLAGS)" \
        compile_only "Debian hardening flags" build-debflags -DCMAKE_C_COMPILER=gcc \
        -DCMAKE_BUILD_TYPE=None
fi

run_ctest gcc build
if [[ $quick -eq 0 ]]; then
    # Prepend ours so a caller's own ASAN_OPTIONS/UBSAN_OPTIONS still win.
    run_ctest clang+asan build-asan \
        "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fi

# --- fuzzing ---------------------------------------------------------------
# Each tests/fuzz/fuzz_<name>.c, built with clang + libFuzzer + ASan/UBSan in
# build-fuzz/, runs for 20 s from a seed corpus made of the conformance inputs;
# any crash fails the run and leaves the input in build-fuzz/artifacts/.
if [[ $quick -eq 0 ]]; then
    fuzz_dir=$ROOT/build-fuzz
    fuzz_targets=()
    for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
        if [[ -e $src ]]; then
            fuzz_targets+=("$(basename "$src" .c)")
        fi
    done
    echo "aggd: building fuzz targets in build-fuzz/"
    if [[ ${#fuzz_targets[@]} -eq 0 ]]; then
        summaries+=("aggd: fuzzing: FAILED: no tests/fuzz/fuzz_*.c")
        failed=1
    elif ! cmake -S "$ROOT" -B "$fuzz_dir" -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGGD_FUZZ=ON -DAGGD_TESTS=OFF ||
        ! cmake --build "$fuzz_dir" -j"$JOBS" --target "${fuzz_targets[@]}"; then
        summaries+=("aggd: fuzzing: FAILED: the fuzz targets do not build")
        failed=1
    else
        seeds=$LOGDIR/fuzz-seeds
        # fuzz_syslog takes one message; fuzz_framing one configuration octet
        # (bits 0-1 mode, bits 2-7 v with max_frame v*v, 0 = default) + a stream;
        # fuzz_tz a TZif file.
        python3 - "$ROOT/tests/data/conformance" "$seeds" <<'EOF'
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
def raw(d, k):
    return bytes.fromhex(d[k + '_hex']) if k + '_hex' in d else d[k].encode('utf-8')
def seed(target, n, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, 'seed-%d' % n), 'wb') as f:
        f.write(data)
n = 0
for name in ('rfc5424.jsonl', 'rfc3164.jsonl'):
    with open(os.path.join(src, name), encoding='utf-8') as f:
        for line in f:
            seed('fuzz_syslog', n, raw(json.loads(line), 'input'))
            n += 1
modes = {'auto': 0, 'octet-counting': 1, 'lf': 2, 'nul': 3}
with open(os.path.join(src, 'framing.jsonl'), encoding='utf-8') as f:
    for line in f:
        d = json.loads(line)
        v = 0
        while d.get('max_frame') and v * v < d['max_frame'] and v < 63:
            v += 1
        seed('fuzz_framing', n, bytes([modes[d['framing']] | v << 2]) + raw(d, 'stream'))
        n += 1
# fuzz_tz: a few zone files of the system's tzdata, when it is there
for z in ('Europe/Berlin', 'America/New_York', 'Australia/Sydney', 'Asia/Kolkata', 'UTC'):
    path = os.path.join('/usr/share/zoneinfo', z)
    if os.path.isfile(path):
        with open(path, 'rb') as f:
            seed('fuzz_tz', n, f.read())
        n += 1
for e in ('count{level>=ERROR}[5m]', 'p95:duration_ms{module=api}[1m]', 'rate[30s]',
          'ratio{level>=ERROR,logger_name=billing}[10m]', 'avg:memory_usage_mb{module!="a b"}[24h]'):
    seed('fuzz_expr', n, e.encode())
    n += 1
# fuzz_spool_record: mode octet (bit 0: length-prefixed records), then spool records
# (store/batch.c: kind, transport, peer_len, received_us, month, text_len, raw_len, bytes)
import struct
def rec(kind, transport, peer, text, raw, month=0):
    return struct.pack('<BBHqiII', kind, transport, len(peer), 1717243200000000, month,
                       len(text), len(raw)) + peer + text + raw
# a row is a binary COPY tuple (kind 4) or, spooled by older builds, a COPY text line
# (kind 1): 19 fields, integers at 5, 7, 12, float8 at 13, jsonb at 17, timestamp at 18
fields = [b'ERROR', 'caf\u00e9'.encode()] + [None] * 15 + [b'{"k":1}', b'2024-06-01 12:00:00']
text = '\t'.join('\\N' if f is None else f.decode() for f in fields).encode() + b'\n'
def value(i, f):
    if f is None:
        return struct.pack('>i', -1)
    if i == 17:
        f = b'\x01' + f
    if i == 18:
        f = struct.pack('>q', 1717243200000000 - 946684800000000)
    return struct.pack('>i', len(f)) + f
tuple_ = struct.pack('>h', 19) + b''.join(value(i, f) for i, f in enumerate(fields))
row = rec(4, 3, b'[2001:db8::1]:443', tuple_, b'{"message":"caf\xc3\xa9"}', 24293)
row_text = rec(1, 3, b'[2001:db8::1]:443', text, b'{"message":"caf\xc3\xa9"}', 24293)
reject = rec(2, 0, b'10.0.0.1:514', b'line 1: not JSON', b'\x00\xff raw')
seed('fuzz_spool_record', n, b'\x00' + row)
seed('fuzz_spool_record', n + 1, b'\x00' + reject)
seed('fuzz_spool_record', n + 2, b'\x01' + b''.join(struct.pack('<I', len(r)) + r for r in (row, reject)))
seed('fuzz_spool_record', n + 3, b'\x00' + row_text)
n += 4
EOF
        mkdir -p "$fuzz_dir/artifacts"
        fuzz_bad=()
        for t in "${fuzz_targets[@]}"; do
            mkdir -p "$seeds/$t" "$seeds/$t.corpus"
            echo "aggd: fuzzing $t for 20 s"
            if ASAN_OPTIONS="abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
                "$fuzz_dir/tests/fuzz/$t" -max_total_time=20 -print_final_stats=1 \
                -artifact_prefix="$fuzz_dir/artifacts/$t-" \
                "$seeds/$t.corpus" "$seeds/$t" >"$LOGDIR/$t.log" 2>&1; then
                grep -E '^stat::number_of_executed_units' "$LOGDIR/$t.log" || true
            else
                echo "aggd: $t failed; its log ends with:" >&2
                tail -n 40 "$LOGDIR/$t.log" >&2
                fuzz_bad+=("$t")
            fi
        done
        if [[ ${#fuzz_bad[@]} -ne 0 ]]; then
            summaries+=("aggd: fuzzing: FAILED: ${fuzz_bad[*]} (inputs in build-fuzz/artifacts/)")
            failed=1
        else
            summaries+=("aggd: fuzzing: OK: ${fuzz_targets[*]}, 20 s each, no crash")
        fi
    fi
fi

# --- systemd unit ----------------------------------------------------------
# `systemd-analyze verify` also checks that ExecStart's binary exists, and
# /usr/bin/aggd is only there on a machine where aggd is installed (not on a
# developer's or CI's). That one message class is expected and tolerated;
# anything else it prints (unknown keys, bad values, ...) fails the run.
# The units' Documentation=man:aggd(8) is looked up with man: MANPATH points at
# docs/aggd.8, so a missing or broken page fails too.
if command -v systemd-analyze >/dev/null 2>&1; then
    unit=$ROOT/contrib/systemd/aggd.service
    mkdir -p "$LOGDIR/man/man8"
    cp "$ROOT/docs/aggd.8" "$LOGDIR/man/man8/"
    verify_out=$(MANPATH=$LOGDIR/man systemd-analyze verify "$unit" \
        "$ROOT/contrib/systemd/aggd.socket" 2>&1 || true)
    unexpected=$(printf '%s\n' "$verify_out" |
        grep -vE '^$|Command /usr/bin/aggd is not executable|(user|group).*aggd.*(not found|No such|resolve)' || true)
    if [[ -n $unexpected ]]; then
        echo "aggd: systemd-analyze verify reported problems in $unit or aggd.socket:" >&2
        printf '%s\n' "$unexpected" >&2
        summaries+=("aggd: systemd unit: FAILED")
        failed=1
    elif [[ -n $verify_out ]]; then
        summaries+=("aggd: systemd unit: OK (ignored: /usr/bin/aggd not installed on this machine)")
    else
        summaries+=("aggd: systemd unit: OK")
    fi
else
    summaries+=("aggd: systemd unit: not checked (no systemd-analyze)")
fi

# --- Debian package ----------------------------------------------------------
# Builds build-deb/aggd_<version>_<arch>.deb, runs lintian (errors and warnings
# fail), installs it with dpkg into an empty root, runs `aggd version` and
# `aggd config check` from there and purges it (scripts/package.sh).
if [[ $quick -eq 0 ]]; then
    if "$ROOT/scripts/package.sh" --install-check >"$LOGDIR/package.log" 2>&1; then
        deb=$(grep -o 'build-deb/aggd_[^ ]*\.deb' "$LOGDIR/package.log" | head -n 1 || true)
        summaries+=("aggd: Debian package: OK (${deb:-built}; lintian clean; installed, ran, purged)")
    else
        tail -n 60 "$LOGDIR/package.log" >&2
        summaries+=("aggd: Debian package: FAILED (scripts/package.sh --install-check)")
        failed=1
    fi
fi

echo
printf '%s\n' "${summaries[@]}"
echo "aggd: $total_passed passed, $total_failed failed"
if [[ $failed -ne 0 ]]; then
    echo "aggd: FAILED" >&2
    exit 1
fi
