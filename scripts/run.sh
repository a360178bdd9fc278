#!/usr/bin/env bash
# Build aggd and run it in the foreground, with a local PostgreSQL if no
# database is configured. Arguments go to `aggd serve`, e.g.
#
#   scripts/run.sh
#   scripts/run.sh -c my.conf --set listen.http=127.0.0.1:9090
#
# The database comes from, in order: --set database.url=..., AGGD_DATABASE_URL,
# a database.url line in the -c file. With none of them, a persistent cluster
# in <repo>/var/pg is created on first use and started, and its database
# "dataaggregator" is used. It keeps running after aggd exits; stop it with
# scripts/pg.sh stop var/pg.
#
# aggd runs from the repository root, so the default ./var/spool and
# ./var/archive land in <repo>/var (git-ignored). AGGD_SKIP_DEPS=1 skips the
# package check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_SH=$ROOT/scripts/pg.sh
DB_NAME=dataaggregator

"$ROOT/scripts/deps.sh"

echo "aggd: building build/"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"${AGGD_JOBS:-2}"

# Walk the arguments: make -c paths absolute (we cd to the repo root below),
# keep the config options for `migrate`, and note whether a database.url is
# configured anywhere.
args=()
cfg_args=()
config_file=
url_given=0
[[ -n ${AGGD_DATABASE_URL:-} ]] && url_given=1
while [[ $# -gt 0 ]]; do
    case $1 in
    -c | --config)
        [[ $# -ge 2 ]] || { echo "aggd: $1 needs a file" >&2; exit 2; }
        config_file=$(realpath -m -- "$2")
        args+=("$1" "$config_file")
        cfg_args+=("$1" "$config_file")
        shift 2
        ;;
    --config=*)
        config_file=$(realpath -m -- "${1#--config=}")
        args+=("--config=$config_file")
        cfg_args+=("--config=$config_file")
        shift
        ;;
    --set)
        [[ $# -ge 2 ]] || { echo "aggd: --set needs key=value" >&2; exit 2; }
        [[ $2 == database.url=* ]] && url_given=1
        args+=("$1" "$2")
        cfg_args+=("$1" "$2")
        shift 2
        ;;
    --set=*)
        [[ $1 == --set=database.url=* ]] && url_given=1
        args+=("$1")
        cfg_args+=("$1")
        shift
        ;;
    *)
        args+=("$1")
        shift
        ;;
    esac
done
if [[ -n $config_file ]]; then
    [[ -r $config_file ]] || { echo "aggd: cannot read config file $config_file" >&2; exit 1; }
    grep -Eq '^[[:space:]]*database\.url[[:space:]]*=' "$config_file" && url_given=1
fi

if [[ $url_given -eq 0 ]]; then
    pgdir=$ROOT/var/pg
    # As root the cluster runs as user "aggd", which must be able to reach it;
    # a checkout under /root (or a very long path) cannot host the socket.
    if ! "$PG_SH" check "$pgdir" 2>/dev/null; then
        fallback=/var/tmp/aggd-dev/pg
        echo "aggd: $pgdir cannot host the local cluster (see: scripts/pg.sh check $pgdir);" \
            "using $fallback instead"
        pgdir=$fallback
    fi
    "$PG_SH" init "$pgdir"
    "$PG_SH" start "$pgdir"
    admin_url=$("$PG_SH" url "$pgdir" postgres)
    exists=$(psql "$admin_url" -v ON_ERROR_STOP=1 -XAtc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")
    if [[ $exists != 1 ]]; then
        echo "aggd: creating database $DB_NAME"
        psql "$admin_url" -v ON_ERROR_STOP=1 -Xqc "CREATE DATABASE $DB_NAME"
    fi
    AGGD_DATABASE_URL=$("$PG_SH" url "$pgdir" "$DB_NAME")
    export AGGD_DATABASE_URL
    echo "aggd: using local PostgreSQL: $AGGD_DATABASE_URL"
    echo "aggd: it keeps running after aggd exits; stop it with: scripts/pg.sh stop ${pgdir#"$ROOT"/}"
fi

cd "$ROOT"
echo "aggd: applying migrations"
"$ROOT/build/aggd" migrate up "${cfg_args[@]}"
echo "aggd: starting aggd serve ${args[*]}"
exec "$ROOT/build/aggd" serve "${args[@]}"
