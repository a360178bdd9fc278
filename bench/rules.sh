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
    local -a kinds=('count{level>=ERROR}[5m]' 'rate[1m]' 'ratio{level>=WARNING}[10m]'
                    'avg:duration_ms[1m]' 'p95:duration_ms{module=api}[5m]'
                    'p99:duration_ms[30s]' 'count{module=db,level>=ERROR}[1h]')
    for ((i = 0; i < k; i++)); do
        metric=${kinds[i % ${#kinds[@]}]}
        echo "INSERT INTO alert_rules (name, metric, threshold, operator, severity)" \
             "VALUES ('bench $i', '$metric', 1e12, 'gt', 'low');"
    done
}

# run K: prints the loadgen's events per second with K rules
run() {
    local k=$1 db url port out
    db=bench_rules_$k
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
    kill "$AGGD_PID"
    wait "$AGGD_PID" || true
    AGGD_PID=''
    echo "${out#events_per_s=}"
}

declare -A EPS
for k in $RULES; do
    EPS[$k]=$(run "$k")
    echo "rules=$k events_per_s=${EPS[$k]}" >&2
done
base=${EPS[0]:-}
printf '%-8s %14s %10s\n' rules events/s "vs 0"
for k in $RULES; do
    if [[ -n $base && $base -gt 0 ]]; then
        printf '%-8s %14s %10s\n' "$k" "${EPS[$k]}" "$(awk -v a="${EPS[$k]}" -v b="$base" 'BEGIN{printf "%.2f", a/b}')"
    else
        printf '%-8s %14s %10s\n' "$k" "${EPS[$k]}" -
    fi
done
