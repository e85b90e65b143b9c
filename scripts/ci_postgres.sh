#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the macros tests (tests/macros/) and print its connection
# settings as shell `export` lines on stdout (everything else goes to stderr):
#
#     eval "$(bash scripts/ci_postgres.sh)"      # then: .venv/bin/pytest tests/macros
#
# - Installs PostgreSQL with apt-get when no server binaries are found (needs root; Debian/Ubuntu).
# - Creates its own cluster in $DINMO_PG_DIR (default /tmp/dinmo-ci-postgres), listening on 127.0.0.1 only,
#   on $DINMO_PG_PORT or the first free port from 55432, with a random password (scram-sha-256).
# - Idempotent: a second call reuses the running server (or restarts the stopped cluster) and prints the same
#   settings. `scripts/ci_postgres.sh stop` stops it; `scripts/ci_postgres.sh env` only prints the settings.
# - Also writes the export lines to $DINMO_PG_ENV_FILE when that is set, and to $DINMO_PG_DIR/env.sh.
# As root, the server runs as the `postgres` system user (created by the Debian package, or here when missing;
# override with DINMO_PG_OS_USER); as any other user, it runs as that user.
set -euo pipefail

PGDIR="${DINMO_PG_DIR:-/tmp/dinmo-ci-postgres}"
DATA="$PGDIR/data"
LOG="$PGDIR/server.log"
ENV_OUT="$PGDIR/env.sh"
DB_NAME="${DINMO_PG_DATABASE:-dinmo_test}"
DB_USER="${DINMO_PG_USER:-dinmo}"
ACTION="${1:-start}"

say() { echo "ci_postgres: $*" >&2; }
die() { say "error: $*"; exit 1; }

find_bindir() {
    local dir
    # Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin; newest major first.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir)"
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

install_postgres() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and this is not root: apt-get install postgresql"
    command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL and no apt-get: install a PostgreSQL server first"
    say "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # policy-rc.d style environments (containers) may refuse to start the packaged cluster: that is fine,
    # this script runs its own.
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

BINDIR="$(find_bindir || true)"
if [[ -z "$BINDIR" ]]; then
    [[ "$ACTION" == start ]] || die "PostgreSQL is not installed"
    install_postgres
    BINDIR="$(find_bindir)" || die "PostgreSQL installed, but initdb/pg_ctl/postgres were not found"
fi
say "using PostgreSQL binaries in $BINDIR ($("$BINDIR/postgres" --version))"

# Who runs the server: never root (postgres refuses to).
if [[ "$(id -u)" == 0 ]]; then
    RUN_AS="${DINMO_PG_OS_USER:-postgres}"
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        say "creating system user $RUN_AS"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
    fi
    as_server() { runuser -u "$RUN_AS" -- "$@"; }
else
    RUN_AS="$(id -un)"
    as_server() { "$@"; }
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

print_env() {
    local port password
    port="$(cat "$PGDIR/port")"
    password="$(cat "$PGDIR/password")"
    {
        echo "export DINMO_TEST_POSTGRES_HOST=127.0.0.1"
        echo "export DINMO_TEST_POSTGRES_PORT=$port"
        echo "export DINMO_TEST_POSTGRES_USER=$DB_USER"
        echo "export DINMO_TEST_POSTGRES_PASSWORD=$password"
        echo "export DINMO_TEST_POSTGRES_DB=$DB_NAME"
    } >"$ENV_OUT"
    chmod 600 "$ENV_OUT"
    if [[ -n "${DINMO_PG_ENV_FILE:-}" ]]; then
        cp "$ENV_OUT" "$DINMO_PG_ENV_FILE"
    fi
    cat "$ENV_OUT"
}

running() { [[ -f "$DATA/PG_VERSION" ]] && as_server "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

# A server killed without shutting down (e.g. the machine's processes were ended between runs) leaves
# postmaster.pid and the socket lock behind; when that PID is now another process, pg_ctl would think the
# server runs. Remove them when the PID is not a live postgres.
clear_stale_pid() {
    local pid_file="$DATA/postmaster.pid" pid
    [[ -f "$pid_file" ]] || return 0
    pid="$(head -n 1 "$pid_file" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]]; then
        return 0
    fi
    say "removing the stale postmaster.pid of a server that is gone (pid ${pid:-?})"
    rm -f "$pid_file" "$PGDIR"/.s.PGSQL.*
}

clear_stale_pid

case "$ACTION" in
    stop)
        if running; then as_server "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2; else say "not running"; fi
        exit 0
        ;;
    env)
        [[ -f "$PGDIR/port" ]] || die "no cluster in $PGDIR: run without arguments first"
        print_env
        exit 0
        ;;
    start) ;;
    *) die "usage: $0 [start|stop|env]" ;;
esac

# A fresh cluster, unless one from an earlier call is there.
if [[ ! -f "$DATA/PG_VERSION" ]]; then
    mkdir -p "$PGDIR"
    chmod 700 "$PGDIR"
    umask 077
    head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$PGDIR/password"
    umask 022
    printf '%s\n' "$(cat "$PGDIR/password")" >"$PGDIR/pwfile"
    [[ "$(id -u)" == 0 ]] && chown -R "$RUN_AS" "$PGDIR"
    say "initdb in $DATA"
    as_server "$BINDIR/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$PGDIR/pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C >"$PGDIR/initdb.log" 2>&1 \
        || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
    rm -f "$PGDIR/pwfile" "$PGDIR/port"
fi

if running; then
    say "already running on port $(cat "$PGDIR/port")"
else
    port="${DINMO_PG_PORT:-}"
    if [[ -z "$port" ]]; then
        port=55432
        while port_in_use "$port"; do port=$((port + 1)); done
    elif port_in_use "$port"; then
        die "port $port is in use"
    fi
    echo "$port" >"$PGDIR/port"
    [[ "$(id -u)" == 0 ]] && chown "$RUN_AS" "$PGDIR/port"
    say "starting on 127.0.0.1:$port (log: $LOG)"
    # Durability is irrelevant for a test server: no fsync makes dbt's many small transactions cheap.
    as_server "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$PGDIR' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { tail -n 30 "$LOG" >&2 || true; die "the server did not start"; }
fi

port="$(cat "$PGDIR/port")"
# The test database (idempotent).
export PGPASSWORD
PGPASSWORD="$(cat "$PGDIR/password")"
psql_() { "$BINDIR/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -v ON_ERROR_STOP=1 -qtA "$@"; }
for _ in $(seq 1 30); do psql_ -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 1; done
if [[ "$(psql_ -d postgres -c "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]]; then
    psql_ -d postgres -c "create database \"$DB_NAME\"" >&2
fi
say "ready: database $DB_NAME on 127.0.0.1:$port"
print_env
