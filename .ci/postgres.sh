#!/usr/bin/env bash
# Sourced by .ci/run: a throwaway PostgreSQL for the store tests. Installs the Debian package if no server is
# installed, initdb's a temporary directory, starts the server on 127.0.0.1 with a random free port, and exports
# VEIL_TEST_PG_URL (tests create one database each on it). Stopped and removed when the sourcing shell exits.
# initdb/postgres refuse to run as root: as root they run as the `postgres` user the package creates.

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin_dir)" ]; then
  echo "== installing postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
VEIL_PG_BIN="$(pg_bin_dir)"
if [ -z "$VEIL_PG_BIN" ]; then
  echo "postgres.sh: no PostgreSQL binaries under /usr/lib/postgresql/*/bin" >&2
  exit 1
fi

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

VEIL_PG_DIR="$(mktemp -d /tmp/veil-ci-pg.XXXXXX)"
if [ "$(id -u)" = 0 ]; then chown postgres: "$VEIL_PG_DIR"; fi
as_pg "$VEIL_PG_BIN/initdb" -D "$VEIL_PG_DIR/data" -A trust -U postgres >/dev/null

veil_pg_stop() {
  as_pg "$VEIL_PG_BIN/pg_ctl" -D "$VEIL_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$VEIL_PG_DIR"
}
trap veil_pg_stop EXIT

# A random port; another one if something already listens there.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  VEIL_PG_PORT=$((20000 + RANDOM % 40000))
  if as_pg "$VEIL_PG_BIN/pg_ctl" -D "$VEIL_PG_DIR/data" -l "$VEIL_PG_DIR/log" -w -t 60 \
       -o "-p $VEIL_PG_PORT -k $VEIL_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null; then
    export VEIL_TEST_PG_URL="postgres://postgres@127.0.0.1:$VEIL_PG_PORT/postgres"
    break
  fi
done
if [ -z "${VEIL_TEST_PG_URL:-}" ]; then
  echo "postgres.sh: PostgreSQL did not start:" >&2
  cat "$VEIL_PG_DIR/log" >&2 || true
  exit 1
fi
echo "== PostgreSQL $("$VEIL_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$VEIL_PG_PORT"
