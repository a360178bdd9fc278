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
# On first start (no var/first-run.txt yet, or a new database) it creates an
# admin account, an API token and an ingest token and writes them to
# var/first-run.txt (mode 0600), a shell file that also exports
# AGGD_DATABASE_URL and sets BASE_URL and API: `. var/first-run.txt` in another terminal
# (README "A first session"). Later starts only print where it is.
#
# aggd runs from the repository root, so the default ./var/spool and
# ./var/archive land in <repo>/var (git-ignored). AGGD_SKIP_DEPS=1 skips the
# package check; AGGD_SKIP_BUILD=1 uses the existing build/aggd as it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_SH=$ROOT/scripts/pg.sh
DB_NAME=dataaggregator

AGGD=$ROOT/build/aggd
FIRST_RUN=$ROOT/var/first-run.txt
ADMIN_EMAIL=admin@example.com

"$ROOT/scripts/deps.sh"

if [[ ${AGGD_SKIP_BUILD:-0} == 1 ]]; then
    [[ -x $AGGD ]] || { echo "aggd: AGGD_SKIP_BUILD=1 but there is no $AGGD" >&2; exit 1; }
    echo "aggd: AGGD_SKIP_BUILD=1, using build/aggd as it is"
else
    echo "aggd: building build/"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$ROOT/build" -j"${AGGD_JOBS:-2}"
fi

# Walk the arguments: make -c paths absolute (we cd to the repo root below),
# keep the config options for `migrate`, and note whether a database.url is
# configured anywhere.
args=()
cfg_args=()
config_file=
url_given=0
url_set=0
pg_rel=
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
        [[ $2 == database.url=* ]] && url_given=1 && url_set=1
        args+=("$1" "$2")
        cfg_args+=("$1" "$2")
        shift 2
        ;;
    --set=*)
        [[ $1 == --set=database.url=* ]] && url_given=1 && url_set=1
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
        # Credentials of an earlier database would not work in this one.
        rm -f "$FIRST_RUN"
    fi
    pg_rel=${pgdir#"$ROOT"/}
    AGGD_DATABASE_URL=$("$PG_SH" url "$pgdir" "$DB_NAME")
    export AGGD_DATABASE_URL
    echo "aggd: using local PostgreSQL: $AGGD_DATABASE_URL"
    echo "aggd: it keeps running after aggd exits; stop it with: scripts/pg.sh stop $pg_rel"
fi

cd "$ROOT"
echo "aggd: applying migrations"
"$AGGD" migrate up "${cfg_args[@]}"

# --- first run: an admin, an API token and an ingest token -------------------
# Written to a file only its owner can read, never to the terminal.
if [[ ! -s $FIRST_RUN ]]; then
    # The HTTP address the README's commands use: listen.http as configured,
    # with a wildcard host replaced by loopback.
    http=$("$AGGD" config check "${cfg_args[@]}" | sed -nE 's/^listen\.http = ([^ ]*) .*/\1/p')
    case $http in
    '""') http= ;;
    0.0.0.0:*) http=127.0.0.1:${http#0.0.0.0:} ;;
    \[::\]:*) http="[::1]:${http#'[::]:'}" ;;
    esac
    password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    echo "aggd: first run: creating the admin $ADMIN_EMAIL and two tokens"
    if ! user_out=$(printf '%s\n' "$password" |
        "$AGGD" user add --email "$ADMIN_EMAIL" --role admin --name Admin "${cfg_args[@]}" 2>&1); then
        # The account exists (a lost first-run.txt): its password is not known
        # here, but fresh tokens still work.
        grep -q 'already exists' <<<"$user_out" || { echo "$user_out" >&2; exit 1; }
        password='(unknown: the account existed before this file was written)'
    fi
    api_token=$("$AGGD" token create --email "$ADMIN_EMAIL" --scope api --name first-run \
        "${cfg_args[@]}" | tail -n 1)
    ingest_token=$("$AGGD" token create --email "$ADMIN_EMAIL" --scope ingest --name first-run \
        "${cfg_args[@]}" | tail -n 1)
    # NAME='value' lines for the shell (a ' inside becomes '\'').
    line() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }
    mkdir -p "$(dirname "$FIRST_RUN")"
    (
        umask 077
        tmp=$FIRST_RUN.tmp
        {
            echo "# aggd: written by scripts/run.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); only you can read it."
            echo "# Load it into a shell at the repository root: . var/first-run.txt"
            # The same database as aggd: --set beats the environment beats -c FILE.
            if [[ $url_set -eq 0 && -n ${AGGD_DATABASE_URL:-} ]]; then
                printf 'export '
                line AGGD_DATABASE_URL "$AGGD_DATABASE_URL"
            else
                echo "# The database comes from run.sh's -c/--set options: give aggd the same ones."
            fi
            line BASE_URL "${http:+http://$http}"
            line API "${http:+http://$http/api/v1}"
            line ADMIN_EMAIL "$ADMIN_EMAIL"
            line ADMIN_PASSWORD "$password"
            echo "# Authorization: Bearer \$API_TOKEN for /api/v1, \$INGEST_TOKEN for POST /v1/logs"
            line API_TOKEN "$api_token"
            line INGEST_TOKEN "$ingest_token"
            echo "# Stop aggd with Ctrl-C where scripts/run.sh runs.${pg_rel:+ Then PostgreSQL: scripts/pg.sh stop $pg_rel}"
        } >"$tmp"
        mv -f "$tmp" "$FIRST_RUN"
    )
fi
echo "aggd: admin account, API and ingest tokens, AGGD_DATABASE_URL: ${FIRST_RUN#"$ROOT"/} (mode 0600)"
echo "aggd: in another terminal at $ROOT:"
echo "aggd:     export PATH=\$PWD/build:\$PATH; . ${FIRST_RUN#"$ROOT"/}"
echo "aggd: stop aggd with Ctrl-C (or kill $$)${pg_rel:+; then PostgreSQL with: scripts/pg.sh stop $pg_rel}"
echo "aggd: starting aggd serve ${args[*]}"
exec "$AGGD" serve "${args[@]}"
