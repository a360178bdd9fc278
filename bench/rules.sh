#!/usr/bin/env bash
# bench/rules.sh [N] — the cost of alert rules on ingest: HTTP ingest throughput with
# 0, 10 and 100 active rules, as ratios to 0 rules, in one run (issue target: 100 rules
# cost at most 20 %).
#
# Each run: a fresh database in one throw-away cluster (scripts/pg.sh), K rules of
# mixed aggregates (count, rate, ratio, avg, p95, p99; filters on level and module),
# aggd serve (spool.fsync=never, so the disk does not hide the CPU cost), N events
# from aggd_loadgen over HTTP; the figure is the loadgen's accepted events per second.
# N defaults to 200000. BENCH_BUILD_DIR (default <repo>/build) holds aggd and
# bench/aggd_loadgen, built beforehand. BENCH_RULES overrides "0 10 100".
# BENCH_DISTINCT=1 gives every rule a window of its own length, so no two rules share
# an expression (rules with equal expressions share one window): the worst case.
# BENCH_ROUNDS (default 3) rounds run every K in turn; each K keeps its best round, and
# the aggd main thread's CPU time per million events (where the rules cost shows even
# when PostgreSQL or the client sets the pace) is printed beside it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly N=${1:-200000}
readonly BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
readonly RULES=${BENCH_RULES:-0 10 100}
readonly PG_SH=$ROOT/scripts/pg.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aggd-rules-bench.XXXXXX")
chmod 755 "$WORK"
AGGD_PID=''

cleanup() {
    [[ -n $AGGD_PID ]] && kill "$AGGD_PID" 2>/dev/null && wait "$AGGD_PID" 2>/dev/null
    "$PG_SH" stop "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$PG_SH" init "$WORK/pg" >/dev/null
"$PG_SH" start "$WORK/pg" >/dev/null
ADMIN=$("$PG_SH" url "$WORK/pg" postgres)

# rules_sql K: K rules cycling through the aggregate kinds
rules_sql() {
    local k=$1 i metric
    local -a kinds=('count{level>=ERROR}' 'rate' 'ratio{level>=WARNING}' 'avg:duration_ms'
                    'p95:duration_ms{module=api}' 'p99:duration_ms' 'count{module=db,level>=ERROR}')
    local -a windows=('[5m]' '[1m]' '[10m]' '[1m]' '[5m]' '[30s]' '[1h]')
    for ((i = 0; i < k; i++)); do
        metric=${kinds[i % ${#kinds[@]}]}
        if [[ ${BENCH_DISTINCT:-0} == 1 ]]; then
            metric+="[$((60 + i))s]" # every rule its own window: the worst case
        else
            metric+=${windows[i % ${#windows[@]}]}
        fi
        echo "INSERT INTO alert_rules (name, metric, threshold, operator, severity)" \
             "VALUES ('bench $i', '$metric', 1e12, 'gt', 'low');"
    done
}

run() {
    local k=$1 db url port out
    db=bench_rules_${k}_$RANDOM$RANDOM
    psql -X -q -d "$ADMIN" -c "CREATE DATABASE $db" >/dev/null
    url=$("$PG_SH" url "$WORK/pg" "$db")
    "$BUILD/aggd" migrate up --set "database.url=$url" >/dev/null
    rules_sql "$k" | psql -X -q -v ON_ERROR_STOP=1 -d "$url" >/dev/null
    port=$(free_port)
    rm -rf "$WORK/spool"
    "$BUILD/aggd" serve --set "database.url=$url" --set "listen.http=127.0.0.1:$port" \
        --set listen.syslog_udp= --set listen.syslog_tcp= --set listen.json_tcp= \
        --set ingest.http_auth=none --set spool.fsync=never --set "spool.dir=$WORK/spool" \
        >"$WORK/aggd-$k.log" 2>&1 &
    AGGD_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/metrics" 2>/dev/null |
            grep -q "^aggd_rules{status=\"active\"} $k\$" && break
        sleep 0.1
    done
    out=$("$BUILD/bench/aggd_loadgen" --mode http --count "$N" --port "$port" --rate 0 \
        --conns 4 --batch 1000 --seed 1 2>&1 | grep -o 'events_per_s=[0-9]*' | head -n1)
    # utime + stime of the main thread (its tid is the pid), in clock ticks
    cpu=$(awk '{print $14 + $15}' "/proc/$AGGD_PID/task/$AGGD_PID/stat")
    kill "$AGGD_PID"
    wait "$AGGD_PID" || true
    AGGD_PID=''
    echo "${out#events_per_s=} $cpu"
}

declare -A EPS CPU
readonly ROUNDS=${BENCH_ROUNDS:-3}
readonly HZ=$(getconf CLK_TCK)
for ((r = 1; r <= ROUNDS; r++)); do
    for k in $RULES; do
        read -r eps cpu < <(run "$k")
        echo "round $r: rules=$k events_per_s=$eps main_thread_cpu_ticks=$cpu" >&2
        if [[ -z ${EPS[$k]:-} || $eps -gt ${EPS[$k]} ]]; then EPS[$k]=$eps; fi
        if [[ -z ${CPU[$k]:-} || $cpu -lt ${CPU[$k]} ]]; then CPU[$k]=$cpu; fi
    done
done
base=${EPS[0]:-}
cbase=${CPU[0]:-}
printf '%-8s %12s %8s %22s %8s\n' rules events/s "vs 0" "main CPU s / M events" "vs 0"
for k in $RULES; do
    cps=$(awk -v c="${CPU[$k]}" -v hz="$HZ" -v n="$N" 'BEGIN{printf "%.2f", c / hz * 1e6 / n}')
    if [[ -n $base && $base -gt 0 && -n $cbase && $cbase -gt 0 ]]; then
        printf '%-8s %12s %8s %22s %8s\n' "$k" "${EPS[$k]}" \
            "$(awk -v a="${EPS[$k]}" -v b="$base" 'BEGIN{printf "%.2f", a/b}')" "$cps" \
            "$(awk -v a="${CPU[$k]}" -v b="$cbase" 'BEGIN{printf "%.2f", a/b}')"
    else
        printf '%-8s %12s %8s %22s %8s\n' "$k" "${EPS[$k]}" - "$cps" -
    fi
done
