#!/usr/bin/env bash
# Throw-away / local PostgreSQL cluster helper for tests and development.
#
#   scripts/pg.sh init   DIR            create a cluster in DIR/data (idempotent)
#   scripts/pg.sh start  DIR [PORT]     start it; waits until it accepts connections
#   scripts/pg.sh stop   DIR            fast shutdown; no-op when not running
#   scripts/pg.sh url    DIR [DBNAME]   print the libpq URI (unix socket in DIR)
#   scripts/pg.sh status DIR            exit 0 running, 3 stopped, 4 not initialized
#   scripts/pg.sh check  DIR            exit 0 if DIR can host a cluster, 3 if not
#
# Layout: DIR/data (PGDATA), DIR/log (server log), DIR/port (chosen port),
# DIR/.s.PGSQL.<port> (the socket). The server listens on the unix socket only,
# so clusters never clash on TCP and need no password (auth=trust, user postgres).
#
# initdb refuses to run as root, so as root every PostgreSQL command runs as the
# system user "aggd" (created on first use) and DIR is handed over to it.
set -euo pipefail

readonly PG_USER=aggd
# sun_path is 108 bytes; the socket name ".s.PGSQL.NNNNN" takes 15 of them.
readonly MAX_DIR_LEN=92

die() {
    echo "aggd: pg.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# Newest installed server version (Debian puts each major under its own dir).
pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb ]] ||
        die "no PostgreSQL server found under /usr/lib/postgresql/*/bin (run scripts/deps.sh)"
    printf '%s\n' "$dir"
}

# DIR as an absolute path without requiring it to exist yet.
abs_dir() {
    local d=$1
    [[ $d == /* ]] || d=$PWD/$d
    # Drop trailing slashes so socket and URL paths are canonical.
    while [[ $d == */ && $d != / ]]; do d=${d%/}; done
    printf '%s\n' "$d"
}

# Run a PostgreSQL command as the cluster owner. cd / first so the server
# tools do not warn about an unreadable current directory (e.g. /root).
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_pg_user() {
    [[ $EUID -eq 0 ]] || return 0
    id -u "$PG_USER" >/dev/null 2>&1 && return 0
    command -v useradd >/dev/null 2>&1 || die "useradd not found; cannot create user $PG_USER"
    echo "aggd: pg.sh: creating system user $PG_USER (PostgreSQL refuses to run as root)"
    # A concurrent run may have created it meanwhile; only fail if still missing.
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null ||
        id -u "$PG_USER" >/dev/null 2>&1 ||
        die "could not create system user $PG_USER"
}

# Fails (exit 3) with a reason if DIR cannot host a cluster. Nothing is created.
check_dir() {
    local dir=$1 p
    [[ $dir != *"'"* ]] || { echo "aggd: pg.sh: $dir: a single quote in the path is not supported" >&2; return 3; }
    if [[ ${#dir} -gt $MAX_DIR_LEN ]]; then
        echo "aggd: pg.sh: $dir is ${#dir} characters long; the unix socket path limit allows at most $MAX_DIR_LEN" >&2
        return 3
    fi
    [[ $EUID -eq 0 ]] || return 0
    ensure_pg_user
    # As root the server runs as $PG_USER: it must be able to reach DIR.
    # DIR itself is chowned to it later, so only the existing parents matter.
    p=$(dirname "$dir")
    while [[ ! -e $p ]]; do p=$(dirname "$p"); done
    while :; do
        if ! runuser -u "$PG_USER" -- test -x "$p" 2>/dev/null; then
            echo "aggd: pg.sh: user $PG_USER cannot traverse $p (needed to reach $dir);" \
                "use a directory under /tmp or /var/tmp, or chmod o+x the parents" >&2
            return 3
        fi
        [[ $p == / ]] && break
        p=$(dirname "$p")
    done
}

port_of() {
    local dir=$1
    [[ -s $dir/port ]] || die "$dir has no port file; run: scripts/pg.sh start $dir"
    cat "$dir/port"
}

is_initialized() { [[ -f $1/data/PG_VERSION ]]; }

is_running() {
    local dir=$1 bindir
    is_initialized "$dir" || return 1
    bindir=$(pg_bindir)
    as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# A port nobody listens on over TCP and with no socket of ours in DIR. The
# server itself listens on the socket only, so this is just courtesy towards
# other services and PostgreSQL's port-derived shared memory keys.
pick_port() {
    local dir=$1 port _
    for _ in $(seq 1 100); do
        port=$(shuf -i 20000-60000 -n 1)
        [[ -e $dir/.s.PGSQL.$port ]] && continue
        if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
            continue
        fi
        printf '%s\n' "$port"
        return 0
    done
    die "could not find a free port in 20000-60000"
}

# Percent-encode a value for a URI query parameter (keeps / for readability).
uri_encode() {
    # Byte-wise in the C locale so non-ASCII paths encode as UTF-8 bytes.
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~/-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s\n' "$out"
}

cmd_init() {
    local dir=$1 bindir locale_opt
    check_dir "$dir" || exit 3
    if is_initialized "$dir"; then
        echo "aggd: pg.sh: cluster already initialized in $dir"
        return 0
    fi
    bindir=$(pg_bindir)
    mkdir -p "$dir"
    [[ -z $(ls -A "$dir/data" 2>/dev/null) ]] || die "$dir/data exists, is not empty and is not a cluster"
    if [[ $EUID -eq 0 ]]; then
        # The server writes its socket, lock file and log into DIR itself.
        chown "$PG_USER:" "$dir"
        runuser -u "$PG_USER" -- test -w "$dir" || die "user $PG_USER cannot write to $dir"
    fi
    # C.UTF-8 gives byte-order collation with UTF-8 ctype, predictable in tests.
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale_opt=(--locale=C.UTF-8)
    else
        locale_opt=(--no-locale)
    fi
    echo "aggd: pg.sh: initializing cluster in $dir/data"
    if ! as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        "${locale_opt[@]}" >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    # Unix socket in DIR only; the port goes in a file rewritten by "start".
    cat >>"$dir/data/postgresql.conf" <<CONF

# --- added by scripts/pg.sh ---
listen_addresses = ''
unix_socket_directories = '$dir'
include_if_exists = 'pg_sh_port.conf'
CONF
    echo "aggd: pg.sh: initialized $dir"
}

cmd_start() {
    local dir=$1 want=${2:-} bindir port i
    is_initialized "$dir" || die "no cluster in $dir; run: scripts/pg.sh init $dir"
    bindir=$(pg_bindir)
    if is_running "$dir"; then
        port=$(port_of "$dir")
        [[ -z $want || $want == "$port" ]] ||
            die "already running on port $port; stop it first to change the port"
        echo "aggd: pg.sh: already running in $dir (port $port)"
        return 0
    fi
    if [[ -n $want ]]; then
        [[ $want =~ ^[0-9]+$ && $want -ge 1 && $want -le 65535 ]] || die "bad port: $want"
        port=$want
    elif [[ -s $dir/port ]]; then
        port=$(cat "$dir/port") # keep the URL stable across restarts
    else
        port=$(pick_port "$dir")
    fi
    printf '%s\n' "$port" >"$dir/port"
    printf 'port = %s\n' "$port" >"$dir/data/pg_sh_port.conf"
    [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$dir/data/pg_sh_port.conf"

    # -W: do not let pg_ctl wait; we poll pg_isready below with our own timeout.
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -W -s start; then
        tail -n 30 "$dir/log" >&2 2>/dev/null || true
        die "pg_ctl start failed (log: $dir/log)"
    fi
    for ((i = 0; i < 300; i++)); do
        if "$bindir/pg_isready" -q -h "$dir" -p "$port" -U postgres -d postgres; then
            echo "aggd: pg.sh: PostgreSQL running in $dir (port $port)"
            return 0
        fi
        sleep 0.1
    done
    echo "aggd: pg.sh: server did not accept connections within 30 s; log tail:" >&2
    tail -n 30 "$dir/log" >&2 2>/dev/null || true
    # Do not leave a half-started server behind.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -s stop >/dev/null 2>&1 || true
    exit 1
}

cmd_stop() {
    local dir=$1 bindir
    if ! is_running "$dir"; then
        echo "aggd: pg.sh: not running in $dir"
        return 0
    fi
    bindir=$(pg_bindir)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 -s stop
    echo "aggd: pg.sh: stopped $dir"
}

cmd_url() {
    local dir=$1 db=${2:-postgres} port
    port=$(port_of "$dir")
    printf 'postgresql:///%s?host=%s&port=%s&user=postgres\n' \
        "$(uri_encode "$db")" "$(uri_encode "$dir")" "$port"
}

cmd_status() {
    local dir=$1
    if ! is_initialized "$dir"; then
        echo "aggd: pg.sh: no cluster in $dir"
        exit 4
    fi
    if is_running "$dir"; then
        echo "aggd: pg.sh: running in $dir (port $(port_of "$dir")): $(cmd_url "$dir")"
        exit 0
    fi
    echo "aggd: pg.sh: stopped ($dir)"
    exit 3
}

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$(abs_dir "$2")
shift 2
case $cmd in
init) [[ $# -eq 0 ]] || usage; cmd_init "$dir" ;;
start) [[ $# -le 1 ]] || usage; cmd_start "$dir" "$@" ;;
stop) [[ $# -eq 0 ]] || usage; cmd_stop "$dir" ;;
url) [[ $# -le 1 ]] || usage; cmd_url "$dir" "$@" ;;
status) [[ $# -eq 0 ]] || usage; cmd_status "$dir" ;;
check) [[ $# -eq 0 ]] || usage; check_dir "$dir" || exit 3 ;;
*) usage ;;
esac
