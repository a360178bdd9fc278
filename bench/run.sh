#!/usr/bin/env bash
# bench/run.sh [N] — aggd's ingest benchmark, all on this machine, in one run:
#
#   0. parse only: aggd_parsebench, each decoder (RFC 5424, RFC 3164, NDJSON, OTLP
#      JSON) from bytes to COPY row on one thread, no database (BENCH_PARSE_N events)
#   1. for each mode of BENCH_MODES (default "syslog-tcp http") and each spool.fsync
#      of BENCH_FSYNC (default "never batch always"): aggd serve on a fresh database
#      with a fresh spool dir, N events from aggd_loadgen, timed from the loadgen
#      start to the commit of the last row; aggd's peak RSS; every row checked to be
#      there once; aggd's CPU per event and PostgreSQL's CPU per row. The rows of the
#      batch run are dumped (COPY ... TO) for step 2
#   2. baseline, per mode: those rows, exactly as aggd stored them, loaded back with
#      psql \copy into a fresh migrated system_logs, in 1 session, then (truncated)
#      in 2 sessions at once (the file split in halves); the faster is "best COPY"
#   3. for each mode: latency with spool.fsync=batch (the default) at half its peak
#      rate just measured (min(N, 30 s of events)), p50/p99 of commit time - send
#      time, computed in PostgreSQL; then, for each fsync value, a paced run at one
#      common rate (half the slowest fsync value's peak): send -> commit as above,
#      and for http the ack latency (request sent -> its 2xx, from the loadgen)
#   4. the tables: parse only; COPY 1 / 2 sessions and aggd vs the best COPY
#      (spool.fsync=batch), with CPU per event; the fsync values vs never
#
# N defaults to 1000000. Environment:
#   BENCH_MODES      modes to run (syslog-tcp, http)            default "syslog-tcp http"
#   BENCH_FSYNC      spool.fsync values to run; must hold batch  default "never batch always"
#   BENCH_BUILD_DIR  cmake build directory (RelWithDebInfo)     default <repo>/build
#   BENCH_CONNS      loadgen connections                        default 4
#   BENCH_BATCH      events per HTTP request                    default 1000
#   BENCH_LATENCY_S  seconds of events in the latency runs      default 30
#   BENCH_SEED       loadgen seed                               default 1
#   BENCH_PARSE_N    events per decoder in step 0; 0 skips it   default 100000
#   BENCH_NO_BUILD=1 use the binaries already in BENCH_BUILD_DIR as they are
#   BENCH_KEEP=1     keep the temp directory (cluster, logs) for inspection
#   BENCH_TMP        parent of the temp directory               default /tmp
#   BENCH_LOADGEN_ARGS extra arguments for aggd_loadgen (e.g. "--retry-after-ms 20")
#   BENCH_AGGD_ARGS  extra arguments for aggd serve, e.g. "--set batch.max_ms=50"
#                    (the reported figures are then not the defaults': say so);
#                    not spool.dir or spool.fsync (the script sets those per run)
#
# One throw-away PostgreSQL (scripts/pg.sh, unix socket, random port) serves every
# step, with the same settings for baseline and aggd: track_commit_timestamp = on
# (the latency figures need it), max_wal_size = 4GB, checkpoint_timeout = 30min,
# synchronous_commit on. It is stopped and the temp directory removed on any exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly N=${1:-1000000}
readonly MODES=${BENCH_MODES:-syslog-tcp http}
readonly FSYNCS=${BENCH_FSYNC:-never batch always}
readonly BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
readonly CONNS=${BENCH_CONNS:-4}
readonly BATCH=${BENCH_BATCH:-1000}
readonly LATENCY_S=${BENCH_LATENCY_S:-30}
readonly SEED=${BENCH_SEED:-1}
readonly PARSE_N=${BENCH_PARSE_N:-100000}
readonly PG_SH=$ROOT/scripts/pg.sh
readonly COLS="level, message, logger_name, module, function_name, line_number, correlation_id, user_id, request_id, request_method, request_path, request_ip, duration_ms, memory_usage_mb, exception_type, exception_message, stack_trace, extra_data, created_at"
CLK_TCK=$(getconf CLK_TCK)
readonly CLK_TCK
readonly POLL_S=0.2
# Extra arguments, split on blanks like a command line.
read -r -a AGGD_EXTRA <<<"${BENCH_AGGD_ARGS:-}"
read -r -a LOADGEN_EXTRA <<<"${BENCH_LOADGEN_ARGS:-}"

WORK=''
AGGD_PID=''
TOP_PID=''
LG_PID=''

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got \"$N\""
[[ $PARSE_N =~ ^[0-9]+$ ]] || die "BENCH_PARSE_N must be an integer, got \"$PARSE_N\""
for m in $MODES; do
    [[ $m == syslog-tcp || $m == http ]] || die "unknown mode \"$m\" in BENCH_MODES (syslog-tcp, http)"
done
for f in $FSYNCS; do
    [[ $f == never || $f == batch || $f == always ]] ||
        die "unknown spool.fsync \"$f\" in BENCH_FSYNC (never, batch, always)"
done
[[ " $FSYNCS " == *" batch "* ]] || die "BENCH_FSYNC must hold batch (the default, measured against COPY)"
[[ ${BENCH_AGGD_ARGS:-} != *spool.fsync* && ${BENCH_AGGD_ARGS:-} != *spool.dir* ]] ||
    die "BENCH_AGGD_ARGS must not set spool.fsync or spool.dir: BENCH_FSYNC chooses the former, the script the latter"
for t in psql curl ss cmake split; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (scripts/deps.sh installs it)"
done

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $AGGD_PID ]] && kill -0 "$AGGD_PID" 2>/dev/null; then
        kill -TERM "$AGGD_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$AGGD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AGGD_PID" 2>/dev/null || true
    fi
    [[ -z $TOP_PID ]] || kill "$TOP_PID" 2>/dev/null || true
    [[ -z $LG_PID ]] || kill "$LG_PID" 2>/dev/null || true
    if [[ -n $WORK ]]; then
        "$PG_SH" stop "$WORK/pg" >/dev/null 2>&1 || true
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            say "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
# Arithmetic on decimal strings: calc 'EXPR' var=value... prints a float (%.6f);
# calci prints an integer.
calcf() {
    local fmt=$1 expr=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-v "$kv"); done
    awk "${args[@]}" "BEGIN { printf \"$fmt\", $expr }" </dev/null
}
calc() { calcf '%.6f' "$@"; }
calci() { calcf '%d' "$@"; }

# ---- build -------------------------------------------------------------------

build() {
    local type
    if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
        say "BENCH_NO_BUILD=1: using $BUILD/aggd and $BUILD/bench/aggd_{loadgen,parsebench} as they are"
        return 0
    fi
    if [[ -f $BUILD/CMakeCache.txt ]]; then
        type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
        [[ $type == RelWithDebInfo ]] ||
            die "$BUILD is a $type build; the benchmark needs RelWithDebInfo (set BENCH_BUILD_DIR)"
        ! grep -q '^AGGD_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" ||
            die "$BUILD has sanitizers on; use another BENCH_BUILD_DIR"
        grep -q '^AGGD_BENCH:BOOL=ON' "$BUILD/CMakeCache.txt" ||
            cmake -S "$ROOT" -B "$BUILD" -DAGGD_BENCH=ON >/dev/null
    else
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGGD_BENCH=ON >/dev/null
    fi
    say "building aggd, aggd_loadgen and aggd_parsebench in $BUILD"
    cmake --build "$BUILD" -j"$(nproc)" --target aggd aggd_loadgen aggd_parsebench \
        >"$WORK/build.log" 2>&1 || {
        tail -n 40 "$WORK/build.log" >&2
        die "build failed (see above)"
    }
}

# ---- PostgreSQL ----------------------------------------------------------------

start_pg() {
    "$PG_SH" init "$WORK/pg" >/dev/null
    cat >>"$WORK/pg/data/postgresql.conf" <<'CONF'

# --- added by bench/run.sh: the same for the COPY baseline and for aggd ---
track_commit_timestamp = on
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on
CONF
    "$PG_SH" start "$WORK/pg" >/dev/null
    ADMIN_URL=$("$PG_SH" url "$WORK/pg" postgres)
    PG_VERSION=$(psql -XAtq "$ADMIN_URL" -c 'SHOW server_version')
    say "PostgreSQL $PG_VERSION in $WORK/pg"
}

sql() { # sql DB QUERY -> unaligned, tuples only
    PGOPTIONS='-c client_min_messages=warning' psql -XAtq -v ON_ERROR_STOP=1 "$("$PG_SH" url "$WORK/pg" "$1")" -c "$2"
}

# A fresh, migrated database with the current month's partition.
fresh_db() {
    local db=$1 url
    sql postgres "DROP DATABASE IF EXISTS $db" >/dev/null
    sql postgres "CREATE DATABASE $db" >/dev/null
    url=$("$PG_SH" url "$WORK/pg" "$db")
    "$AGGD" migrate up --set database.url="$url" >"$WORK/migrate-$db.log" 2>&1 || {
        cat "$WORK/migrate-$db.log" >&2
        die "aggd migrate up failed for $db"
    }
    sql "$db" "SELECT aggd_create_month_partition('system_logs', now()::date)" >/dev/null
    # Every measurement starts with no dirty buffers left by the steps before it,
    # in PostgreSQL or in the page cache (the baseline's input file).
    sql "$db" "CHECKPOINT" >/dev/null
    sync
}

# CPU ticks of the cluster: postmaster (self + reaped children) + live backends.
pg_ticks() {
    local pm total=0 pid f
    pm=$(head -n 1 "$WORK/pg/data/postmaster.pid")
    read -r -a f <"/proc/$pm/stat"
    total=$((f[13] + f[14] + f[15] + f[16]))
    for pid in $(ps -o pid= --ppid "$pm"); do
        if read -r -a f 2>/dev/null <"/proc/$pid/stat"; then
            # fields after "(comm)": comm of postgres children has no spaces
            total=$((total + f[13] + f[14]))
        fi
    done
    echo "$total"
}

# "busy iowait" ticks of the whole machine (all CPUs): to see other load.
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $6; exit }' /proc/stat
}

# procs FILE: "pid ppid comm self_ticks reaped_children_ticks" of every process.
procs() {
    awk '{
        e = 0
        for (i = length($0); i > 0; i--) if (substr($0, i, 1) == ")") { e = i; break }
        c = index($0, "(")
        comm = substr($0, c + 1, e - c - 1)
        gsub(/[ \t]/, "_", comm)
        split(substr($0, e + 2), f, " ")
        # after "pid (comm) ": state ppid ... utime=12 stime=13 cutime=14 cstime=15
        print $1, f[2], comm, f[12] + f[13], f[14] + f[15]
    }' /proc/[0-9]*/stat 2>/dev/null >"$1" || true
}

# others A B AGGD_PID LG_PID LG_CPU_S: between procs snapshots A and B, the CPU of
# processes other than aggd, the loadgen, the cluster (postmaster and its children)
# and this script: the busiest ones first, "comm[pid] s, …" (0.1 s or more; their own
# time only: what their children did shows when they are reaped, not when it ran,
# so short-lived processes of others are only in the machine's total), then
# ", run.sh and its short-lived children (psql, curl, sleep) s". A loadgen that bash
# reaped already is in this script's children's time: LG_CPU_S is taken off it.
others() {
    local a=$1 b=$2 ag=$3 lg=$4 lgcpu=${5:-0} pm
    pm=$(head -n 1 "$WORK/pg/data/postmaster.pid")
    [[ $lgcpu =~ ^[0-9.]+$ ]] || lgcpu=0
    awk -v hz="$CLK_TCK" -v pm="$pm" -v me="$$" -v ag="$ag" -v lg="$lg" -v lgcpu="$lgcpu" '
        NR == FNR { s[$1] = $4; c[$1] = $5; next }
        {
            d = $4 - ($1 in s ? s[$1] : 0)
            if ($1 == lg) lg_alive = 1
            if ($1 == me) { mine = d + $5 - ($1 in c ? c[$1] : 0); next }
            if ($1 == pm || $2 == pm || $1 == ag || $1 == lg) next
            if (d >= 0.1 * hz) printf "%s[%s] %.1f\n", $3, $1, d / hz
        }
        END { printf "~ %.1f\n", (mine - (lg_alive ? 0 : lgcpu * hz)) / hz }' "$a" "$b" |
        sort -k2,2 -rn | awk '{ if ($1 == "~") r = $2; else { printf "%s%s %s s", (n++ ? ", " : ""), $1, $2 } }
            END { printf "%srun.sh and its short-lived children (psql, curl, sleep) %s s", (n ? ", " : ""), r }'
}

proc_ticks() {
    local f
    read -r -a f <"/proc/$1/stat"
    echo $((f[13] + f[14]))
}

# "tid name ticks" for each thread of process <pid>. aggd does not name its threads;
# they are named by start order, as src/server.c starts them: main (event loop),
# spool (store/spool.c), WRITERS writers, 2 jobs. Another thread count than that:
# "main" and comm/tid.
thread_ticks() {
    local t line rest name f tids=() rank=0 known=0
    for t in /proc/"$1"/task/*; do tids+=("${t##*/}"); done
    ((${#tids[@]} == WRITERS + 4)) && known=1
    for t in $(printf '%s\n' "${tids[@]}" | sort -n); do
        line=$(cat "/proc/$1/task/$t/stat" 2>/dev/null) || continue
        name=${line#*(}
        name=${name%)*}
        name="${name// /_}/$t"
        if [[ $t == "$1" ]]; then
            name=main
        elif ((known)); then
            if ((rank == 1)); then
                name=spool
            elif ((rank <= WRITERS + 1)); then
                name=writer$((rank - 1))
            else
                name=jobs$((rank - WRITERS - 1))
            fi
        fi
        rank=$((rank + 1))
        rest=${line##*) }
        read -r -a f <<<"$rest"
        # after "pid (comm) ": state=0 ... utime=11 stime=12
        echo "$t $name $((f[11] + f[12]))"
    done
}

# Per-thread CPU seconds between two thread_ticks snapshots, busiest first:
# "name s, name s, ...".
thread_cpu() {
    awk -v hz="$CLK_TCK" 'NR == FNR { a[$1] = $3; next }
        { d = ($3 - a[$1]) / hz; if (d > 0.05) printf "%s %.1f\n", $2, d }' "$1" "$2" |
        sort -k2,2 -rn | awk '{ printf "%s%s %s s", (NR > 1 ? ", " : ""), $1, $2 }'
}

# ---- aggd ---------------------------------------------------------------------

# free_port VAR: sets VAR to a port no socket on this machine uses (TCP or UDP, any
# state), below the ephemeral range so that no outgoing connection (psql, the
# loadgen, other sessions) takes it before aggd binds it.
free_port() {
    local p lo=32768 hi _ss
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    hi=$((lo - 1))
    ((hi >= 21000)) || hi=60000
    for _ in $(seq 1 200); do
        p=$(shuf -i "20000-$hi" -n 1)
        [[ " $USED_PORTS " != *" $p "* ]] || continue
        _ss=$(ss -Hatun "( sport = :$p )" 2>/dev/null) || _ss=''
        if [[ -z $_ss ]]; then
            USED_PORTS="$USED_PORTS $p"
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}
USED_PORTS=''

# start_aggd DB TAG FSYNC: aggd serve on database DB with spool.fsync=FSYNC and a
# spool and archive dir of its own (stop_aggd removes them). A port taken between
# the check and aggd's bind: new ports, up to 3 tries.
start_aggd() {
    local db=$1 tag=$2 fsync=$3 url i try
    url=$("$PG_SH" url "$WORK/pg" "$db")
    SPOOL_DIR=$WORK/spool-$tag
    ARCHIVE_DIR=$WORK/archive-$tag
    AGGD_LOG=$WORK/aggd-$tag.log
    for ((try = 1; try <= 3; try++)); do
        free_port HTTP_PORT
        free_port SYSLOG_PORT
        free_port UDP_PORT
        free_port JSON_PORT
        rm -rf "$SPOOL_DIR" "$ARCHIVE_DIR"
        mkdir -p "$SPOOL_DIR" "$ARCHIVE_DIR"
        "$AGGD" serve --set database.url="$url" \
            --set listen.http="127.0.0.1:$HTTP_PORT" \
            --set listen.syslog_tcp="127.0.0.1:$SYSLOG_PORT" \
            --set listen.syslog_udp="127.0.0.1:$UDP_PORT" \
            --set listen.json_tcp="127.0.0.1:$JSON_PORT" \
            --set ingest.http_auth=none \
            --set spool.dir="$SPOOL_DIR" \
            --set spool.fsync="$fsync" \
            --set archive.dir="$ARCHIVE_DIR" \
            "${AGGD_EXTRA[@]}" >"$AGGD_LOG" 2>&1 &
        AGGD_PID=$!
        for ((i = 0; i < 300; i++)); do
            if ! kill -0 "$AGGD_PID" 2>/dev/null; then
                wait "$AGGD_PID" 2>/dev/null || true
                AGGD_PID=''
                if ((try < 3)) && grep -q 'could not listen' "$AGGD_LOG"; then
                    say "aggd: $(grep -m 1 'could not listen' "$AGGD_LOG" | sed 's/.*ERROR //'); new ports"
                    continue 2
                fi
                tail -n 20 "$AGGD_LOG" >&2
                die "aggd serve exited at start (log above)"
            fi
            if curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/readyz"; then
                return 0
            fi
            sleep 0.1
        done
        tail -n 20 "$AGGD_LOG" >&2
        die "aggd not ready within 30 s"
    done
}

# Stops aggd with SIGTERM; sets AGGD_EXIT (its exit status, or "killed"); removes
# its spool and archive dirs.
stop_aggd() {
    local i
    kill -TERM "$AGGD_PID"
    for ((i = 0; i < 600; i++)); do
        kill -0 "$AGGD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$AGGD_PID" 2>/dev/null; then
        kill -KILL "$AGGD_PID" 2>/dev/null || true
        wait "$AGGD_PID" 2>/dev/null || true
        AGGD_EXIT=killed
        say "aggd did not stop within 60 s of SIGTERM: killed"
    else
        AGGD_EXIT=0
        wait "$AGGD_PID" || AGGD_EXIT=$?
    fi
    AGGD_PID=''
    [[ $AGGD_EXIT == 0 ]] || {
        say "aggd exited with $AGGD_EXIT after SIGTERM; log tail:"
        tail -n 10 "$AGGD_LOG" >&2
    }
    rm -rf "$SPOOL_DIR" "$ARCHIVE_DIR"
}

# aggd_rows_committed_total, or empty. It is called every POLL_S during the
# measurement and must cost little: bash's /dev/tcp for the request, one sed for the
# answer (HTTP/1.0: aggd closes when done), ~4 ms of CPU. (Bash's read builtin reads
# a socket a byte at a time: on /metrics' 7 KB that cost 19 ms per call, a fifth of
# a core at 10 calls/s.)
committed() {
    local fd
    { exec {fd}<>"/dev/tcp/127.0.0.1/$HTTP_PORT"; } 2>/dev/null || return 0
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd" || true
    timeout 2 sed -n 's/^aggd_rows_committed_total \([0-9][0-9]*\)[^0-9]*$/\1/p' <&"$fd" || true
    exec {fd}<&-
    return 0
}

# nap SECONDS: sleep without starting a process (a read that times out on a pipe
# nobody writes to).
nap() { read -r -t "$1" <&"$NAP_FD" || true; }

# Waits until <db> holds <want> rows: polls aggd's /metrics every POLL_S (cheap, and
# adds no load to PostgreSQL; the end time is the last commit's timestamp, so the
# interval does not matter to the figures), falls back to count(*) every 5th poll
# when the metric is missing, confirms with count(*). Once the loadgen (<lg_pid>,
# summary in <lg_out>) has exited, waits only for the events it delivered, and gives
# up when nothing moves for 60 s. 0 when all <want> rows are there.
wait_rows() {
    local db=$1 want=$2 lg_pid=$3 lg_out=$4 target=$2 have=0 last=-1 still=0 c i=0 sent lg_done=0
    while :; do
        c=$(committed)
        if [[ -z $c ]]; then
            if ((i % 5 == 0)); then c=$(sql "$db" "SELECT count(*) FROM system_logs"); else c=$have; fi
        fi
        have=$c
        if ((have >= target)); then
            have=$(sql "$db" "SELECT count(*) FROM system_logs")
            if ((have >= target)); then
                ((have >= want)) && return 0
                say "only $have of $want rows: the loadgen delivered $target"
                return 1
            fi
        fi
        if ((!lg_done)) && ! kill -0 "$lg_pid" 2>/dev/null; then
            lg_done=1
            sent=$(field sent "$lg_out")
            [[ $sent =~ ^[0-9]+$ ]] || sent=0
            if ((sent < want)); then
                target=$sent
                continue
            fi
        fi
        if ((lg_done)); then
            if ((have == last)); then still=$((still + 1)); else still=0; fi
            if ((still >= 300)); then
                say "gave up: $have of $want rows after 60 s without progress"
                return 1
            fi
        fi
        last=$have
        i=$((i + 1))
        nap "$POLL_S"
    done
}

# start_loadgen MODE COUNT RATE TAG: the loadgen in the background; LG_PID, LG_OUT set.
start_loadgen() {
    local mode=$1 count=$2 rate=$3 tag=$4 port
    if [[ $mode == http ]]; then port=$HTTP_PORT; else port=$SYSLOG_PORT; fi
    LG_OUT=$WORK/loadgen-$tag.out
    "$LOADGEN" --mode "$mode" --count "$count" --port "$port" --rate "$rate" \
        --conns "$CONNS" --batch "$BATCH" --seed "$SEED" "${LOADGEN_EXTRA[@]}" \
        >"$LG_OUT" 2>"$LG_OUT.err" &
    LG_PID=$!
}

field() { # field KEY FILE: value of KEY=value in the loadgen summary line
    sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p;s/^$1=\([^[:space:]]*\).*/\1/p" "$2" | head -n 1
}

# "rows distinct": count(*) and count(DISTINCT correlation_id)
check_rows() {
    sql "$1" "SELECT count(*) || ' ' || count(DISTINCT correlation_id) FROM system_logs"
}

# ---- steps --------------------------------------------------------------------

# copy_load DB FILE...: one `psql \copy` per FILE into DB's system_logs, all at once;
# prints the seconds from the first start to the last end.
copy_load() {
    local db=$1 url t0 t1 f p pids=() rc=0
    shift
    url=$("$PG_SH" url "$WORK/pg" "$db")
    t0=$(now)
    for f in "$@"; do
        psql -Xq -v ON_ERROR_STOP=1 "$url" -c "\\copy system_logs ($COLS) FROM '$f'" >/dev/null &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    t1=$(now)
    ((rc == 0)) || die "psql \\copy into $db failed"
    calc 't1 - t0' t1="$t1" t0="$t0"
}

# dump_rows DB MODE: the rows aggd committed in DB, as COPY text in aggd's column
# order (the table's own output: jsonb as PostgreSQL prints it), to
# $WORK/rows-MODE.tsv, for MODE's baseline.
dump_rows() {
    psql -Xq -v ON_ERROR_STOP=1 "$("$PG_SH" url "$WORK/pg" "$1")" \
        -c "\\copy (SELECT $COLS FROM system_logs ORDER BY id) TO '$WORK/rows-$2.tsv'"
}

# Baseline of MODE: the rows aggd committed in MODE's spool.fsync=batch run (dumped by
# dump_rows), loaded with psql \copy into a fresh migrated system_logs: 1 session,
# then, truncated and checkpointed, 2 sessions at once, each loading one half of the
# file (split at a line). Results under MODE/1 and MODE/2; COPY_BEST[MODE] the faster.
baseline() {
    local mode=$1 db file rows n k secs mb0 mb1 mw0 mw1 pg0 pg1 other have files
    db=b_copy_${mode//-/_}
    file=$WORK/rows-$mode.tsv
    if [[ ! -s $file ]]; then
        say "baseline ($mode rows): no rows from aggd's batch run: skipped"
        return 0
    fi
    rows=$(wc -l <"$file")
    COPY_ROWS[$mode]=$rows
    COPY_MIB[$mode]=$(calcf '%.1f' 'b / 1048576' b="$(stat -c %s "$file")")
    split -n l/2 -d "$file" "$file.half"
    fresh_db "$db"
    for n in 1 2; do
        k=$mode/$n
        if ((n == 1)); then
            files=("$file")
        else
            files=("$file.half00" "$file.half01")
            sql "$db" "TRUNCATE system_logs" >/dev/null
            sql "$db" "CHECKPOINT" >/dev/null
            sync
        fi
        say "baseline ($mode rows): psql \\copy of $rows rows, ${COPY_MIB[$mode]} MiB, $n session(s)"
        read -r mb0 mw0 < <(machine_ticks)
        pg0=$(pg_ticks)
        secs=$(copy_load "$db" "${files[@]}")
        sleep 0.5 # the postmaster reaps the finished backends: then their CPU counts
        pg1=$(pg_ticks)
        read -r mb1 mw1 < <(machine_ticks)
        other=$(calcf '%.1f' '((b1 - b0) - (p1 - p0)) / hz' b1="$mb1" b0="$mb0" p1="$pg1" p0="$pg0" hz="$CLK_TCK")
        COPY_CPU[$k]="postgres $(ticks_s "$pg0" "$pg1") s; machine busy $(ticks_s "$mb0" "$mb1") s, other processes (psql included) $other s, iowait $(ticks_s "$mw0" "$mw1") s"
        COPY_PG_US[$k]=$(calc '(p1 - p0) / hz * 1e6 / r' p1="$pg1" p0="$pg0" hz="$CLK_TCK" r="$rows")
        note_noise "psql COPY ($mode rows, $n session(s))" "$other" "$secs"
        have=$(sql "$db" "SELECT count(*) FROM system_logs")
        [[ $have == "$rows" ]] || die "baseline ($mode rows, $n session(s)) stored $have rows, expected $rows"
        COPY_S[$k]=$secs
        COPY_RATE[$k]=$(calc 'n / s' n="$rows" s="$secs")
        say "baseline ($mode rows, $n session(s)): $(printf '%.2f' "$secs") s, $(printf '%.0f' "${COPY_RATE[$k]}") rows/s"
        if [[ -z ${COPY_BEST[$mode]:-} ]] ||
            awk -v a="${COPY_RATE[$k]}" -v b="${COPY_BEST[$mode]}" 'BEGIN { exit !(a > b) }'; then
            COPY_BEST[$mode]=${COPY_RATE[$k]}
        fi
    done
    rm -f "$file" "$file.half00" "$file.half01"
    sql postgres "DROP DATABASE $db" >/dev/null
}

# note_noise PHASE OTHER_CPU_S WALL_S: remembers phases of 3 s or more during which
# processes other than ours (other sessions, kernel threads) used over 10 % of the
# machine.
note_noise() {
    local pct
    # A phase of a few seconds is dominated by this script's own psql and ps calls.
    (($(calci 'w' w="$3") >= 3)) || return 0
    pct=$(calci '100 * o / (w * c)' o="$2" w="$3" c="$(nproc)")
    ((pct <= 10)) || NOISE+=("$1: ${pct} % of the machine")
}

ticks_s() { calcf '%.1f' '(b - a) / hz' b="$2" a="$1" hz="$CLK_TCK"; }

# throughput MODE FSYNC: N events unpaced into aggd with spool.fsync=FSYNC; results
# under the key MODE/FSYNC.
throughput() {
    local mode=$1 fsync=$2 k="$1/$2" db tag t0 tend rows distinct ag0 ag1 pg0 pg1 hwm lg_errors \
        secs mb0 mb1 mw0 mw1 lgcpu other t1 ag_pid lg_pid
    db=e2e_${mode//-/_}_$fsync
    tag=$mode-$fsync
    RESULT_OK[$k]=yes
    fresh_db "$db"
    start_aggd "$db" "$tag" "$fsync"
    say "$mode, spool.fsync=$fsync: $N events over $CONNS connections"
    read -r mb0 mw0 < <(machine_ticks)
    ag0=$(proc_ticks "$AGGD_PID")
    pg0=$(pg_ticks)
    thread_ticks "$AGGD_PID" >"$WORK/threads-$tag.0"
    procs "$WORK/procs-$tag.0"
    t0=$(now)
    start_loadgen "$mode" "$N" 0 "$tag"
    wait_rows "$db" "$N" "$LG_PID" "$LG_OUT" || RESULT_OK[$k]=no
    ag1=$(proc_ticks "$AGGD_PID")
    pg1=$(pg_ticks)
    read -r mb1 mw1 < <(machine_ticks)
    t1=$(now)
    procs "$WORK/procs-$tag.1"
    ag_pid=$AGGD_PID
    lg_pid=$LG_PID
    thread_ticks "$AGGD_PID" >"$WORK/threads-$tag.1"
    RESULT_THREADS[$k]=$(thread_cpu "$WORK/threads-$tag.0" "$WORK/threads-$tag.1")
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGGD_PID/status")
    curl -fs --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" >"$WORK/metrics-$tag.txt" || true
    wait "$LG_PID" || true
    cat "$LG_OUT.err" >&2
    lg_errors=$(field errors "$LG_OUT")
    stop_aggd
    read -r rows distinct < <(check_rows "$db")
    RESULT_ROWS[$k]="$rows/$distinct"
    RESULT_EXIT[$k]=$AGGD_EXIT
    RESULT_LGERR[$k]=${lg_errors:-?}
    RESULT_LG_RATE[$k]=$(field events_per_s "$LG_OUT")
    RESULT_RSS[$k]=$(calcf '%.1f' 'k / 1024' k="$hwm")
    if [[ $mode == http ]]; then
        RESULT_HTTP[$k]="requests $(field requests "$LG_OUT"), 503s $(field retries_503 "$LG_OUT"); ack (request sent -> 2xx, unpaced) p50 $(field ack_p50_ms "$LG_OUT") ms, p99 $(field ack_p99_ms "$LG_OUT") ms, max $(field ack_max_ms "$LG_OUT") ms"
    fi
    lgcpu=$(field cpu_s "$LG_OUT")
    RESULT_OTHERS[$k]=$(others "$WORK/procs-$tag.0" "$WORK/procs-$tag.1" "$ag_pid" "$lg_pid" "$lgcpu")
    other=$(calcf '%.1f' '(b1 - b0 - (a1 - a0) - (p1 - p0)) / hz - l' b1="$mb1" b0="$mb0" a1="$ag1" a0="$ag0" p1="$pg1" p0="$pg0" l="${lgcpu:-0}" hz="$CLK_TCK")
    RESULT_CPU[$k]="aggd $(ticks_s "$ag0" "$ag1") s, postgres $(ticks_s "$pg0" "$pg1") s, loadgen ${lgcpu:-?} s; machine busy $(ticks_s "$mb0" "$mb1") s, other processes $other s, iowait $(ticks_s "$mw0" "$mw1") s"
    note_noise "aggd $mode, fsync $fsync" "$other" "$(calc 't1 - t0' t1="$t1" t0="$t0")"
    [[ $rows == "$N" && $distinct == "$N" && ${lg_errors:-1} == 0 && $AGGD_EXIT == 0 ]] ||
        RESULT_OK[$k]=no
    if ((rows > 0)); then
        # CPU per event: aggd's (utime + stime of the process) over the rows it
        # committed, PostgreSQL's (postmaster, backends, reaped children) per row.
        RESULT_AG_US[$k]=$(calc '(a1 - a0) / hz * 1e6 / r' a1="$ag1" a0="$ag0" hz="$CLK_TCK" r="$rows")
        RESULT_PG_US[$k]=$(calc '(p1 - p0) / hz * 1e6 / r' p1="$pg1" p0="$pg0" hz="$CLK_TCK" r="$rows")
        [[ $fsync != batch ]] || dump_rows "$db" "$mode"
        # The end is the commit time of the last row, exact to the µs.
        tend=$(sql "$db" "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM system_logs")
        secs=$(calc 'e - s' e="$tend" s="$t0")
        RESULT_S[$k]=$secs
        RESULT_RATE[$k]=$(calc 'r / s' r="$rows" s="$secs")
        say "$mode, fsync $fsync: $rows rows ($distinct distinct) in $(printf '%.2f' "$secs") s = $(printf '%.0f' "${RESULT_RATE[$k]}") events/s; peak RSS ${RESULT_RSS[$k]} MiB; CPU ${RESULT_CPU[$k]}"
    else
        say "$mode, fsync $fsync: no row arrived (aggd log: $AGGD_LOG)"
    fi
    sql postgres "DROP DATABASE $db" >/dev/null
}

# latency MODE FSYNC RATE KEY: aggd with spool.fsync=FSYNC, the loadgen paced at RATE
# events/s for LATENCY_S s of events (at most N); send -> commit p50/p99/max of the
# rows, and for http the loadgen's ack p50/p99/max; results under KEY. The verdict
# "every row exactly once" goes to RESULT_OK[MODE/FSYNC].
latency() {
    local mode=$1 fsync=$2 rate=$3 k=$4 db tag count rows distinct pct p50 p99 pmax t0 t1 \
        mb0 mb1 ag0 ag1 pg0 pg1 other
    db=lat_${mode//-/_}_$fsync
    tag=$mode-$fsync-lat-$rate
    ((rate >= 1)) || rate=1
    count=$(calci 'r * s' r="$rate" s="$LATENCY_S")
    ((count <= N)) || count=$N
    ((count >= 1)) || count=1
    fresh_db "$db"
    start_aggd "$db" "$tag" "$fsync"
    say "$mode latency, spool.fsync=$fsync: $count events at $rate events/s"
    read -r mb0 _ < <(machine_ticks)
    ag0=$(proc_ticks "$AGGD_PID")
    pg0=$(pg_ticks)
    t0=$(now)
    start_loadgen "$mode" "$count" "$rate" "$tag"
    wait_rows "$db" "$count" "$LG_PID" "$LG_OUT" || RESULT_OK[$mode/$fsync]=no
    ag1=$(proc_ticks "$AGGD_PID")
    pg1=$(pg_ticks)
    read -r mb1 _ < <(machine_ticks)
    t1=$(now)
    wait "$LG_PID" || true
    other=$(calcf '%.1f' '(b1 - b0 - (a1 - a0) - (p1 - p0)) / hz - l' b1="$mb1" b0="$mb0" a1="$ag1" a0="$ag0" p1="$pg1" p0="$pg0" l="$(field cpu_s "$LG_OUT")" hz="$CLK_TCK")
    note_noise "aggd $mode latency run, fsync $fsync at $rate/s" "$other" "$(calc 't1 - t0' t1="$t1" t0="$t0")"
    cat "$LG_OUT.err" >&2
    LAT_LG_RATE[$k]=$(field events_per_s "$LG_OUT")
    if [[ $mode == http ]]; then
        LAT_ACK50[$k]=$(field ack_p50_ms "$LG_OUT")
        LAT_ACK99[$k]=$(field ack_p99_ms "$LG_OUT")
        LAT_ACKMAX[$k]=$(field ack_max_ms "$LG_OUT")
        LAT_503[$k]=$(field retries_503 "$LG_OUT")
    fi
    stop_aggd
    [[ $AGGD_EXIT == 0 ]] || {
        RESULT_EXIT[$mode/$fsync]="${RESULT_EXIT[$mode/$fsync]:-}, latency run at $rate/s: $AGGD_EXIT"
        RESULT_OK[$mode/$fsync]=no
    }
    read -r rows distinct < <(check_rows "$db")
    [[ $rows == "$count" && $distinct == "$count" ]] || RESULT_OK[$mode/$fsync]=no
    pct=$(sql "$db" "SELECT to_char(p[1], 'FM999990.0') || ' ' || to_char(p[2], 'FM999990.0') || ' ' || to_char(mx, 'FM999990.0')
        FROM (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms) AS p, max(ms) AS mx
                FROM (SELECT extract(epoch FROM (pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC')
                                                - created_at) * 1000 AS ms
                        FROM system_logs) s) q")
    read -r p50 p99 pmax <<<"$pct"
    LAT_P50[$k]=${p50:--}
    LAT_P99[$k]=${p99:--}
    LAT_MAX[$k]=${pmax:--}
    LAT_RATE[$k]=$rate
    LAT_ROWS[$k]="$rows/$distinct of $count"
    say "$mode latency, fsync $fsync at $rate/s: send -> commit p50 ${LAT_P50[$k]} ms, p99 ${LAT_P99[$k]} ms, max ${LAT_MAX[$k]} ms${LAT_ACK99[$k]:+; ack p50 ${LAT_ACK50[$k]} ms, p99 ${LAT_ACK99[$k]} ms}"
    sql postgres "DROP DATABASE $db" >/dev/null
}

# ---- main ---------------------------------------------------------------------

WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/aggd-bench.XXXXXX")
chmod 755 "$WORK"
exec {NAP_FD}<> <(:) # as root, the cluster runs as user aggd and must reach $WORK/pg
# What is measured: the commit, and the files that differ from it (the build is of
# the working tree).
REVISION=$(git -C "$ROOT" rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
DIRTY=$({ git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null || true; } | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 }')
build
AGGD=$BUILD/aggd
LOADGEN=$BUILD/bench/aggd_loadgen
PARSEBENCH=$BUILD/bench/aggd_parsebench
[[ -x $AGGD && -x $LOADGEN && -x $PARSEBENCH ]] ||
    die "missing $AGGD, $LOADGEN or $PARSEBENCH after the build"
WRITERS=$("$AGGD" config check "${AGGD_EXTRA[@]}" 2>/dev/null | sed -n 's/^writer\.threads = \([0-9]*\).*/\1/p')
[[ $WRITERS =~ ^[0-9]+$ ]] || WRITERS=2
# Step 0, before the cluster starts: one thread of aggd's decoders and COPY encoder,
# nothing else running of ours.
PARSE_TABLE=''
if ((PARSE_N > 0)); then
    say "parse only: $PARSE_N events per decoder"
    if PARSE_TABLE=$("$PARSEBENCH" --count "$PARSE_N" 2>"$WORK/parsebench.err"); then
        printf '%s\n' "$PARSE_TABLE" >&2
    else
        cat "$WORK/parsebench.err" >&2
        PARSE_TABLE="${PARSE_TABLE:+$PARSE_TABLE
}aggd_parsebench FAILED (an event was rejected or not encoded; see above)"
        say "aggd_parsebench failed"
    fi
fi
start_pg

declare -A COPY_S COPY_RATE COPY_CPU COPY_PG_US COPY_ROWS COPY_MIB COPY_BEST RESULT_AG_US RESULT_PG_US RESULT_S RESULT_RATE RESULT_RSS RESULT_ROWS RESULT_EXIT RESULT_OK \
    RESULT_LGERR RESULT_LG_RATE RESULT_CPU RESULT_THREADS RESULT_OTHERS RESULT_HTTP LAT_P50 LAT_P99 LAT_MAX LAT_RATE \
    LAT_ROWS LAT_LG_RATE LAT_ACK50 LAT_ACK99 LAT_ACKMAX LAT_503 COMMON_RATE
NOISE=()
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
# A record of what else ran on the machine, for when the figures look odd.
top -b -d 5 -w 200 >"$WORK/top.log" 2>&1 &
TOP_PID=$!
T_ALL=$(now)

nfsync=$(wc -w <<<"$FSYNCS")

for m in $MODES; do
    for f in $FSYNCS; do
        throughput "$m" "$f"
    done
done
for m in $MODES; do
    baseline "$m"
done
for m in $MODES; do
    # The project's latency target: the default (batch) at half its own peak.
    if [[ -n ${RESULT_RATE[$m/batch]:-} ]]; then
        latency "$m" batch "$(calci 'r / 2' r="${RESULT_RATE[$m/batch]}")" "$m"
    else
        say "$m latency: skipped (no throughput figure with spool.fsync=batch)"
    fi
    # The fsync values against each other: one rate for all, half the slowest one's
    # peak, so that none of them is saturated.
    ((nfsync > 1)) || continue
    slowest=''
    for f in $FSYNCS; do
        r=${RESULT_RATE[$m/$f]:-}
        [[ -n $r ]] || continue
        if [[ -z $slowest ]] || awk -v a="$r" -v b="$slowest" 'BEGIN { exit !(a < b) }'; then slowest=$r; fi
    done
    [[ -n $slowest ]] || continue
    COMMON_RATE[$m]=$(calci 'r / 2' r="$slowest")
    for f in $FSYNCS; do
        latency "$m" "$f" "${COMMON_RATE[$m]}" "$m/$f"
    done
done

# ---- report -------------------------------------------------------------------

# verdict VALUE TARGET >=|<=  ->  met / NOT met / n/a
verdict() {
    [[ $1 =~ ^[0-9.]+$ ]] || { echo n/a; return; }
    if awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { exit !(op == ">=" ? v >= t : v <= t) }'; then
        echo met
    else
        echo "NOT met"
    fi
}
# ratio A B: A / B with 2 decimals, "-" when either is missing
ratio() {
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        calcf '%.2f' 'a / b' a="$1" b="$2"
    else
        echo -
    fi
}
int() { if [[ $1 =~ ^[0-9.]+$ ]]; then printf '%.0f' "$1"; else echo -; fi; }

echo
echo "aggd ingest benchmark — $STARTED — $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), PostgreSQL $PG_VERSION"
echo "aggd at $REVISION${DIRTY:+, with uncommitted changes to: $DIRTY}"
if [[ -n ${BENCH_AGGD_ARGS:-} ]]; then settings="aggd with $BENCH_AGGD_ARGS"; else settings="aggd defaults (batch.max_rows 5000, batch.max_ms 200, writer.threads 2)"; fi
[[ -z ${BENCH_LOADGEN_ARGS:-} ]] || settings="$settings; loadgen with $BENCH_LOADGEN_ARGS"
echo "N = $N events; loadgen: $CONNS connections, http batch $BATCH, seed $SEED; $settings"
echo
if [[ -n $PARSE_TABLE ]]; then
    printf '%s\n\n' "$PARSE_TABLE"
fi
echo "vs the best psql COPY of the same rows (aggd with spool.fsync=batch, the default):"
echo
# 2 decimals of a float, "-" when missing
dec() { if [[ ${1:-} =~ ^[0-9.]+$ ]]; then printf "%.${2:-2}f" "$1"; else echo -; fi; }
row() { printf '%-28s %8s %8s %9s %7s %7s %7s %7s %7s %8s %8s %7s\n' "$@"; }
row path rows seconds rows/s 'vs best' 'RSS MiB' 'p50 ms' 'p99 ms' 'b/never' 'aggd us' 'PG us' 'aggd/PG'
row ---------------------------- -------- -------- --------- ------- ------- ------- ------- ------- -------- -------- -------
declare -A RATIO CPU_SHARE
for m in $MODES; do
    for n in 1 2; do
        k=$m/$n
        [[ -n ${COPY_RATE[$k]:-} ]] || continue
        if ((n == 1)); then label="COPY 1 session ($m)"; else label="COPY 2 sessions ($m)"; fi
        row "$label" "${COPY_ROWS[$m]}" "$(dec "${COPY_S[$k]}")" "$(int "${COPY_RATE[$k]}")" \
            "$(ratio "${COPY_RATE[$k]}" "${COPY_BEST[$m]}")" - - - - - "$(dec "${COPY_PG_US[$k]}" 1)" -
    done
    k=$m/batch
    if [[ -n ${RESULT_RATE[$k]:-} ]]; then
        RATIO[$m]=$(ratio "${RESULT_RATE[$k]}" "${COPY_BEST[$m]:-}")
        CPU_SHARE[$m]=$(ratio "${RESULT_AG_US[$k]:-}" "${RESULT_PG_US[$k]:-}")
        row "aggd $m" "${RESULT_ROWS[$k]%%/*}" "$(dec "${RESULT_S[$k]}")" \
            "$(int "${RESULT_RATE[$k]}")" "${RATIO[$m]}" "${RESULT_RSS[$k]}" \
            "${LAT_P50[$m]:--}" "${LAT_P99[$m]:--}" \
            "$(ratio "${RESULT_RATE[$k]}" "${RESULT_RATE[$m/never]:-}")" "$(dec "${RESULT_AG_US[$k]:-}" 1)" \
            "$(dec "${RESULT_PG_US[$k]:-}" 1)" "${CPU_SHARE[$m]}"
    else
        RATIO[$m]=-
        CPU_SHARE[$m]=-
        row "aggd $m" "$N" FAILED - - "${RESULT_RSS[$k]:--}" - - - - - -
    fi
done
echo
echo "COPY n session(s): the rows aggd committed in that mode's run, dumped and loaded back with psql \\copy"
echo "(text) into a fresh system_logs; 2 sessions load one half each at once. vs best: over the faster"
echo "of the two. seconds: COPY, all sessions; aggd, loadgen start to the commit of the last row."
echo "p50/p99: commit time - send time of each row, at half the mode's events/s, ${LATENCY_S} s of events (at most N)."
echo "b/never: aggd's events/s with spool.fsync=batch over never (needs never in BENCH_FSYNC)."
echo "aggd us: aggd's CPU (user + system) per event, µs; PG us: PostgreSQL's CPU per row, µs (all its"
echo "processes, same interval); aggd/PG: the one over the other (aim <= 0.25)."

declare -A VS_NEVER
if ((nfsync > 1)); then
    echo
    echo "spool.fsync (every accepted event is spooled; never = no fsync, the closest to no spool):"
    echo
    row2() { printf '%-10s %-6s %9s %6s %6s %6s %8s %7s %7s %6s %7s %7s %6s\n' "$@"; }
    row2 mode fsync events/s 'vs nvr' 'vs CPY' 'RSS' 'paced/s' 'ack p50' 'ack p99' 'vs nvr' 'com p50' 'com p99' 'vs nvr'
    row2 ---------- ------ --------- ------ ------ ------ -------- ------- ------- ------ ------- ------- ------
    for m in $MODES; do
        for f in $FSYNCS; do
            k=$m/$f
            VS_NEVER[$k]=$(ratio "${RESULT_RATE[$k]:-}" "${RESULT_RATE[$m/never]:-}")
            row2 "$m" "$f" "$(int "${RESULT_RATE[$k]:-}")" "${VS_NEVER[$k]}" \
                "$(ratio "${RESULT_RATE[$k]:-}" "${COPY_BEST[$m]:-}")" "${RESULT_RSS[$k]:--}" \
                "${LAT_RATE[$k]:--}" "${LAT_ACK50[$k]:--}" "${LAT_ACK99[$k]:--}" \
                "$(ratio "${LAT_ACK99[$k]:-}" "${LAT_ACK99[$m/never]:-}")" \
                "${LAT_P50[$k]:--}" "${LAT_P99[$k]:--}" "$(ratio "${LAT_P99[$k]:-}" "${LAT_P99[$m/never]:-}")"
        done
    done
    echo
    echo "events/s: N events unpaced, as above; vs nvr: over the same mode with fsync=never; vs CPY: over"
    echo "the best psql COPY of the mode's rows; RSS: aggd's peak, MiB. Latencies in ms, every fsync value of a mode paced"
    echo "at the same rate (paced/s: half the slowest value's events/s), ${LATENCY_S} s of events (at most N):"
    echo "ack = request sent -> its 2xx (http; the 2xx comes once the events are durable in the spool; syslog"
    echo "over TCP has no acknowledgement: there the spool shows only as throughput); com = send -> commit."
fi

for m in $MODES; do
    target=0.9
    echo
    echo "$m:"
    for n in 1 2; do
        [[ -n ${COPY_CPU[$m/$n]:-} ]] || continue
        echo "  psql COPY of its ${COPY_ROWS[$m]} rows (${COPY_MIB[$m]} MiB), $n session(s): CPU time: ${COPY_CPU[$m/$n]}"
    done
    rss_max=''
    for f in $FSYNCS; do
        k=$m/$f
        echo "  fsync $f: rows / distinct correlation_id: ${RESULT_ROWS[$k]:-?} (want $N/$N); loadgen errors: ${RESULT_LGERR[$k]:-?}; aggd exit on SIGTERM: ${RESULT_EXIT[$k]:-?}"
        echo "    loadgen send rate: ${RESULT_LG_RATE[$k]:-?} events/s; CPU time during the run: ${RESULT_CPU[$k]:-?}"
        echo "    CPU per event: aggd $(dec "${RESULT_AG_US[$k]:-}" 1) µs, PostgreSQL $(dec "${RESULT_PG_US[$k]:-}" 1) µs per row: $(ratio "${RESULT_AG_US[$k]:-}" "${RESULT_PG_US[$k]:-}")"
        echo "    aggd threads: ${RESULT_THREADS[$k]:-?}"
        echo "    other processes: ${RESULT_OTHERS[$k]:-?}"
        [[ -z ${RESULT_HTTP[$k]:-} ]] || echo "    http: ${RESULT_HTTP[$k]}"
        if [[ -n ${LAT_RATE[$k]:-} ]]; then
            echo "    paced at ${LAT_RATE[$k]} events/s (sent at ${LAT_LG_RATE[$k]:-?}): rows ${LAT_ROWS[$k]}, send -> commit max ${LAT_MAX[$k]} ms${LAT_ACKMAX[$k]:+, ack max ${LAT_ACKMAX[$k]} ms, 503s ${LAT_503[$k]:-?}}"
        fi
        if [[ ${RESULT_RSS[$k]:-} =~ ^[0-9.]+$ ]] && { [[ -z $rss_max ]] || awk -v a="${RESULT_RSS[$k]}" -v b="$rss_max" 'BEGIN { exit !(a > b) }'; }; then
            rss_max=${RESULT_RSS[$k]}
        fi
    done
    if [[ -n ${LAT_RATE[$m]:-} ]]; then
        echo "  latency run (fsync batch): paced at ${LAT_RATE[$m]} events/s (sent at ${LAT_LG_RATE[$m]:-?}), rows ${LAT_ROWS[$m]}, max ${LAT_MAX[$m]} ms${LAT_ACK99[$m]:+, ack p50/p99/max ${LAT_ACK50[$m]}/${LAT_ACK99[$m]}/${LAT_ACKMAX[$m]} ms}"
    fi
    echo "  targets: vs best COPY ${RATIO[$m]} >= $target: $(verdict "${RATIO[$m]}" "$target" '>=');" \
        "peak RSS (every run) ${rss_max:--} MiB <= 128: $(verdict "${rss_max:-}" 128 '<=');" \
        "p99 ${LAT_P99[$m]:--} ms <= 300: $(verdict "${LAT_P99[$m]:-}" 300 '<=');" \
        "${VS_NEVER[$m/batch]:+fsync batch ${VS_NEVER[$m/batch]} x never >= 0.85: $(verdict "${VS_NEVER[$m/batch]}" 0.85 '>=');}" \
        "aggd/PG CPU ${CPU_SHARE[$m]} <= 0.25 (aim): $(verdict "${CPU_SHARE[$m]}" 0.25 '<=');" \
        "every row exactly once: $(ok=yes; for f in $FSYNCS; do [[ ${RESULT_OK[$m/$f]:-no} == yes ]] || ok="no (fsync $f)"; done; echo "$ok")"
done
if ((${#NOISE[@]} > 0)); then
    echo
    echo "WARNING: other processes were busy during some measurements; their figures are not clean:"
    printf '  %s\n' "${NOISE[@]}"
    echo "  (see top.log in the temp directory with BENCH_KEEP=1)"
fi
echo
echo "total time: $(calcf '%.0f' 'b - a' b="$(now)" a="$T_ALL") s"
