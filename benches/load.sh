#!/usr/bin/env bash
# Load benchmark: veil against nginx on the same machine in the same run (issue 6). See README "Benchmarks".
#
#   bash benches/load.sh                      # full run: 5 rounds x 10 s per scenario, writes benches/RESULTS.md
#   DURATION=2 ROUNDS=1 bash benches/load.sh  # quick check
#
# Everything listens on 127.0.0.1 (free ports) and lives in a temp dir. The proxy under test (veil, or nginx with
# worker_processes 1) is pinned to core PROXY_CPU (0); the load generator and the upstream share core LOAD_CPU (1).
# Scenarios, each over plain HTTP/1.1 and over TLS (ECDSA P-256, keep-alive), run interleaved in rounds with the
# order rotated every round: direct to the upstream; nginx reverse proxy (GET, and the 1 KiB checkout POST);
# veil pass-through (GET, and the 1 KiB checkout POST, no route matches); veil tokenising a 1 KiB JSON checkout body with four fields (card,
# email, IBAN, phone) with the same values every request; the same with four fresh values every request (durable
# SQLite store, `uniq-*`) and with ONE fresh value a request (one of 4096 returning customers, their email, IBAN,
# phone and id known, paying with a new card, `uniq1-*`); and the repeated, four-new and
# one-new checkouts on PostgreSQL when VEIL_BENCH_PG_URL is set (`pgrep-*`, `pg-*`, `pg1-*`; both veil processes,
# HTTP and TLS, share that database; `source .ci/postgres.sh` starts a throwaway local PostgreSQL and exports
# VEIL_TEST_PG_URL, which this script uses when VEIL_BENCH_PG_URL is unset and PG=1).
# PostgreSQL on this machine (the URL's host is 127.0.0.1 or localhost) is pinned, with all its processes, to
# LOAD_CPU beside the load generator and the upstream, away from the proxy's core PROXY_CPU: on 2 cores, veil on
# core 0, PostgreSQL + wrk + the upstream on core 1, so the proxy's CPU time per request is veil's alone (its
# affinity is given back at the end; a server elsewhere is left alone and the report says so).
#
# Per round and scenario: `wrk` (closed loop, CONNS connections) gives requests/s and, from /proc/PID/stat, the
# proxy's CPU seconds per 1,000 requests; benches/load_gen (open loop) then sends RATE_FRACTION of nginx's measured
# maximum for LAT_DURATION seconds and reports latency corrected for coordinated omission.
# Peak RSS is measured after the rounds in a pass of its own, on fresh processes: for every proxy scenario and for
# CONNS and then BIG_CONNS connections, the proxy is restarted (same config, same store), loaded with wrk for
# min(DURATION, 5) s, and its VmHWM read. (One process serving every scenario in turn would report what the
# earlier scenarios left resident -- SQLite's page cache, heap glibc keeps -- not what this scenario needs.)
# Last, the RSS per extra idle TLS connection on restarted proxies (IDLE_CONNS handshaken connections, delta / N).
#
# Environment: DURATION (10) ROUNDS (5) LAT_DURATION (DURATION/2) CONNS (64) BIG_CONNS (1000) IDLE_CONNS (1000)
#   RATE_FRACTION (0.5) RATE_HTTP / RATE_TLS (override the fixed rates) PROXY_CPU (0) LOAD_CPU (1) NICE (0; -10
#   lets the processes under test run ahead of other work on a busy machine)
#   VEIL_BENCH_PG_URL (postgres://user:pass@host/db, optional; PG=1 takes VEIL_TEST_PG_URL instead)
#   OUT (benches/RESULTS.md) KEEP_TMP (1 keeps the dir)
#   SCENARIOS (comma-separated ids, e.g. "pass-http,uniq-http": only these run, the others are reported as not
#   selected; without nginx-http / nginx-tls the fixed-rate runs need RATE_HTTP / RATE_TLS or are left out)
#   VEIL_BIN (a veil binary to measure instead of building this tree, e.g. to compare two revisions)
#   VEIL_BIN_B (a second veil binary, measured in the same rounds as rows passB-http, repB-http, uniqB-http beside
#   pass-http, rep-http, uniq-http: two revisions compared interleaved, on the same machine load; the report adds
#   their ratios)
#   VEIL_LOG (veil's log filter, default warn; e.g. warn,veil::store=debug shows group-commit batch sizes and WAL
#   checkpoints in the temp dir's veil-*/stderr, with KEEP_TMP=1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
LAT_DURATION=${LAT_DURATION:-$(python3 -c "print(max(1.0, $DURATION / 2))")}
CONNS=${CONNS:-64}
BIG_CONNS=${BIG_CONNS:-1000}
IDLE_CONNS=${IDLE_CONNS:-1000}
RATE_FRACTION=${RATE_FRACTION:-0.5}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NICE=${NICE:-0}
OUT=${OUT:-$ROOT/benches/RESULTS.md}
# Proxy, upstream and load generator run pinned and, with NICE=-10 (root), ahead of other work on the machine.
PIN_PROXY=(nice -n "$NICE" taskset -c "$PROXY_CPU")
PIN_LOAD=(nice -n "$NICE" taskset -c "$LOAD_CPU")
PG_URL=${VEIL_BENCH_PG_URL:-}
if [ -z "$PG_URL" ] && [ "${PG:-0}" = 1 ]; then PG_URL=${VEIL_TEST_PG_URL:-}; fi
SCENARIOS=${SCENARIOS:-}
COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS bash benches/load.sh"
[ -z "$SCENARIOS" ] || COMMAND="SCENARIOS=$SCENARIOS $COMMAND"
[ -z "$PG_URL" ] || COMMAND="VEIL_BENCH_PG_URL=... $COMMAND"
[ "$NICE" = 0 ] || COMMAND="NICE=$NICE $COMMAND"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[load %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------------------------ tools
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v ss >/dev/null || need+=(iproute2)
command -v pgrep >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
  log "installing from Debian: ${need[*]}"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need[*]} (or install them first)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (proxy on one, load generator + upstream on the other)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building veil and the load generator (release)"
if [ -n "${VEIL_BIN:-}" ]; then
  [ -x "$VEIL_BIN" ] || die "VEIL_BIN=$VEIL_BIN is not an executable"
  VEIL=$VEIL_BIN
  VEIL_REV="$VEIL_BIN (VEIL_BIN)"
else
  cargo build --release --locked --quiet
  VEIL=${CARGO_TARGET_DIR:-$ROOT/target}/release/veil
  VEIL_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo -dirty)"
fi
cargo build --release --locked --quiet --manifest-path benches/load_gen/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}"
GEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/veil-load-gen

# ------------------------------------------------------------------------------------------------ workspace
TMP=$(mktemp -d /tmp/veil-load.XXXXXX)
PIDS=()
PG_POSTMASTER=""; PG_AFFINITY=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # PostgreSQL's processes get their CPU affinity back (pin_pg).
  if [ -n "$PG_POSTMASTER" ] && kill -0 "$PG_POSTMASTER" 2>/dev/null; then
    for p in "$PG_POSTMASTER" $(pgrep -P "$PG_POSTMASTER" || true); do
      taskset -a -p -c "$PG_AFFINITY" "$p" >/dev/null 2>&1 || true
    done
  fi
  wait 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
log "workspace $TMP"

read -r P_UP P_UP_TLS P_NGX P_NGX_TLS P_VH P_VH_VAULT P_VH_ADMIN P_VT P_VT_VAULT P_VT_ADMIN \
  P_GH P_GH_VAULT P_GH_ADMIN P_GT P_GT_VAULT P_GT_ADMIN P_VP P_VP_VAULT P_VP_ADMIN P_VB P_VB_VAULT P_VB_ADMIN \
  < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(22)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# ECDSA P-256 CA and server certificate for 127.0.0.1 / localhost.
(
  cd "$TMP"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -days 2 -subj "/CN=veil bench CA" -out ca.crt 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out server.ec.key 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in server.ec.key -out server.key
  openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > san.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
    -out server.crt 2>/dev/null
)

# The 1 KiB checkout body: four sensitive fields (card number, email, IBAN, phone) among ordinary ones.
cat > "$TMP/checkout.tpl" <<'EOF'
{"order":{"id":"ord-2026-118734","currency":"EUR","total":"149.90","created":"2026-11-24T10:15:00Z","channel":"web"},"customer":{"id":"{CUST}","email":"{EMAIL}","phone":"{PHONE}","name":"Alex Example","locale":"de-DE","newsletter":false},"card":{"number":"{PAN}","holder":"ALEX EXAMPLE","expiry":"12/29","brand":"visa"},"payment":{"method":"card","iban":"{IBAN}","reference":"Invoice 118734"},"billing":{"street":"Hauptstrasse 12","city":"Berlin","postcode":"10115","country":"DE"},"shipping":{"street":"Hauptstrasse 12","city":"Berlin","postcode":"10115","country":"DE","method":"standard","notes":"Please leave the parcel with the neighbour if nobody is at home."},"items":[{"sku":"BK-ALPHA-01","name":"Trail running shoes","qty":1,"price":"119.90"},{"sku":"SK-MERINO-07","name":"Merino socks, three pairs","qty":1,"price":"24.00"},{"sku":"GF-WRAP-00","name":"Gift wrapping","qty":1,"price":"6.00"}],"consent":{"terms":true,"privacy":"2026-05"}}
EOF
"$GEN" body --template "$TMP/checkout.tpl" --seed 4242424242 > "$TMP/checkout.json"
BODY_BYTES=$(wc -c < "$TMP/checkout.json")
# One new value a request: 4096 returning customers (the same in every run: after the first 4096 requests each
# is known), each request one of them with their email, IBAN, phone and id and a new card. (One customer for every
# request, or the same three values linked to a new customer every request, would make a row every request
# waits on in PostgreSQL.)
sed 's/{EMAIL}/{R_EMAIL}/; s/{IBAN}/{R_IBAN}/; s/{PHONE}/{R_PHONE}/; s/{CUST}/{R_CUST}/' "$TMP/checkout.tpl" \
  > "$TMP/checkout1.tpl"

# ------------------------------------------------------------------------------------------------ nginx
# Upstream: fixed JSON for any path and method, keep-alive (core LOAD_CPU). Proxy: keep-alive upstream pool.
mkdir -p "$TMP/up/logs" "$TMP/ngx/logs"
cat > "$TMP/up/nginx.conf" <<EOF
worker_processes 1;
error_log $TMP/up/logs/error.log warn;
pid $TMP/up/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/up/body;
  server {
    listen 127.0.0.1:$P_UP;
    listen 127.0.0.1:$P_UP_TLS ssl;
    ssl_certificate $TMP/server.crt;
    ssl_certificate_key $TMP/server.key;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
EOF
cat > "$TMP/ngx/nginx.conf" <<EOF
worker_processes 1;
error_log $TMP/ngx/logs/error.log warn;
pid $TMP/ngx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/ngx/body;
  proxy_temp_path $TMP/ngx/proxy;
  upstream app { server 127.0.0.1:$P_UP; keepalive 128; }
  server {
    listen 127.0.0.1:$P_NGX;
    listen 127.0.0.1:$P_NGX_TLS ssl;
    ssl_certificate $TMP/server.crt;
    ssl_certificate_key $TMP/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
"${PIN_LOAD[@]}" "$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" -g 'daemon off;' 2>>"$TMP/up/logs/stderr" &
UP_PID=$!; PIDS+=("$UP_PID")
# start_nginx_proxy -> sets NGX_PID
start_nginx_proxy() {
  "${PIN_PROXY[@]}" "$NGINX" -p "$TMP/ngx" -c "$TMP/ngx/nginx.conf" -g 'daemon off;' 2>>"$TMP/ngx/logs/stderr" &
  NGX_PID=$!; PIDS+=("$NGX_PID")
}
start_nginx_proxy

# ------------------------------------------------------------------------------------------------ veil
"$VEIL" keygen --out "$TMP/master.key" >/dev/null
API_KEY_SHA=$(printf %s "bench-$RANDOM$RANDOM" | sha256sum | cut -d' ' -f1)

# veil_config NAME PROXY VAULT ADMIN STORE TLS(0|1) [UNMATCHED (detect|pass|refuse; default detect)]
veil_config() {
  local dir=$TMP/$1
  mkdir -p "$dir"
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nupstream = "http://127.0.0.1:%s"\nunmatched = "%s"\n' "$2" "$P_UP" \
      "${7:-detect}"
    # Every load generator connects from 127.0.0.1: lift the per-client caps (1000 connections at once).
    printf 'max_connections_per_client = 1000000\nmax_pending_per_client = 1000000\n'
    if [ "$6" = 1 ]; then
      printf '[proxy.tls]\ncert = "%s"\nkey = "%s"\n' "$TMP/server.crt" "$TMP/server.key"
    fi
    cat <<EOF

[vault]
listen = "127.0.0.1:$3"
store = "$5"
master_key_file = "$TMP/master.key"
audit_log = "$dir/audit.jsonl"

[admin]
listen = "127.0.0.1:$4"

[[caller]]
name = "bench"
api_key_sha256 = "$API_KEY_SHA"
allow = ["mask:*"]

[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [
  { json = "\$.card.number", class = "pan" },
  { json = "\$.customer.email", class = "email" },
  { json = "\$.payment.iban", class = "iban" },
  { json = "\$.customer.phone", class = "phone" },
]
detect = ["pan", "iban"]
subject = { json = "\$.customer.id" }

# The repeated-values rows send one card every request: its range's budget (100 cards a day by default, every
# card counted, known or new) would refuse them after 100 requests. Lifted, not switched off: the reservation
# stays on the path.
[class.pan]
new_values_per_range_per_day = 4000000000
EOF
  } > "$dir/veil.toml"
  "$VEIL" check -c "$dir/veil.toml" >/dev/null || die "generated config $dir/veil.toml does not validate"
}

# start_veil NAME ADMIN_PORT [BINARY] -> sets STARTED_PID (empty if it did not become ready). Up to 60 s: at start
# veil checks the whole audit log, which the rounds grow by a line a request.
start_veil() {
  local dir=$TMP/$1 bin=${3:-$VEIL}
  (cd "$dir" && VEIL_LOG=${VEIL_LOG:-warn} exec "${PIN_PROXY[@]}" "$bin" run -c veil.toml) >"$dir/stdout" 2>"$dir/stderr" &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$STARTED_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "veil $1 did not become ready: $(tail -n 3 "$dir/stderr" | tr '\n' ' ')"
  STARTED_PID=""
}

veil_config veil-http "$P_VH" "$P_VH_VAULT" "$P_VH_ADMIN" "sqlite://$TMP/veil-http/vault.db" 0
veil_config veil-tls "$P_VT" "$P_VT_VAULT" "$P_VT_ADMIN" "sqlite://$TMP/veil-tls/vault.db" 1
start_veil veil-http "$P_VH_ADMIN"; VH_PID=$STARTED_PID
# The same proxy with requests no route takes streamed through untouched ([proxy] unmatched = "pass"), to show
# what scanning them (the default, "detect") costs.
veil_config veil-pass-http "$P_VP" "$P_VP_VAULT" "$P_VP_ADMIN" "sqlite://$TMP/veil-pass-http/vault.db" 0 pass
start_veil veil-pass-http "$P_VP_ADMIN"; VP_PID=$STARTED_PID
start_veil veil-tls "$P_VT_ADMIN"; VT_PID=$STARTED_PID
[ -n "$VH_PID" ] && [ -n "$VT_PID" ] && [ -n "$VP_PID" ] || die "veil did not start"
# VEIL_BIN_B: the same HTTP proxy (own store and log) run by the second binary.
VB_PID=""; VB_NOTE="not run: VEIL_BIN_B not set"
if [ -n "${VEIL_BIN_B:-}" ]; then
  [ -x "$VEIL_BIN_B" ] || die "VEIL_BIN_B=$VEIL_BIN_B is not an executable"
  veil_config veil-b-http "$P_VB" "$P_VB_VAULT" "$P_VB_ADMIN" "sqlite://$TMP/veil-b-http/vault.db" 0
  start_veil veil-b-http "$P_VB_ADMIN" "$VEIL_BIN_B"; VB_PID=$STARTED_PID
  [ -n "$VB_PID" ] || die "veil (VEIL_BIN_B) did not start"
  VB_NOTE=""
fi
GH_PID=""; GT_PID=""; PG_NOTE="not run: VEIL_BENCH_PG_URL not set"
if [ -n "$PG_URL" ]; then
  PG_NOTE="not run: veil did not start on VEIL_BENCH_PG_URL (see the log)"
  veil_config veil-pg-http "$P_GH" "$P_GH_VAULT" "$P_GH_ADMIN" "$PG_URL" 0
  veil_config veil-pg-tls "$P_GT" "$P_GT_VAULT" "$P_GT_ADMIN" "$PG_URL" 1
  start_veil veil-pg-http "$P_GH_ADMIN"; GH_PID=$STARTED_PID
  start_veil veil-pg-tls "$P_GT_ADMIN"; GT_PID=$STARTED_PID
  [ -n "$GH_PID" ] && [ -n "$GT_PID" ] && PG_NOTE=""
fi

# pin_pg: PostgreSQL (when it listens on this machine) with all its processes on LOAD_CPU, away from the proxy;
# backends started later inherit the postmaster's affinity. Sets PG_PIN (what was done, for the report).
PG_PIN="no PostgreSQL"
pin_pg() {
  local port pid n=0
  port=$(python3 -c '
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1])
print((p.port or 5432) if p.hostname in ("127.0.0.1", "localhost", "::1") else "")' "$PG_URL")
  if [ -z "$port" ]; then PG_PIN="PostgreSQL not on this machine: not pinned"; return 0; fi
  pid=$(ss -Htlnp "( sport = :$port )" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)
  if [ -z "$pid" ]; then PG_PIN="PostgreSQL's process not found (port $port): not pinned"; return 0; fi
  PG_AFFINITY=$(taskset -p -c "$pid" | awk -F': ' '{print $2}')
  for p in "$pid" $(pgrep -P "$pid" || true); do
    taskset -a -p -c "$LOAD_CPU" "$p" >/dev/null 2>&1 && n=$((n + 1))
  done
  PG_POSTMASTER=$pid
  PG_PIN="PostgreSQL (postmaster and its $n processes at the start) pinned to core $LOAD_CPU with the load generator and the upstream; veil on core $PROXY_CPU"
  log "$PG_PIN"
}
[ -z "$GH_PID" ] || pin_pg

for port in "$P_UP" "$P_NGX"; do
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
done
UP_WORKER=$(pgrep -P "$UP_PID" | head -n 1)
NGX_WORKER=$(pgrep -P "$NGX_PID" | head -n 1)
[ -n "$UP_WORKER" ] && [ -n "$NGX_WORKER" ] || die "nginx did not start (see $TMP/*/logs)"

# Every proxy must answer the checkout body with 200 before anything is measured.
check_200() { # URL [curl args...]
  local url=$1; shift
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TMP/ca.crt" "$@" "$url") || code=000
  [ "$code" = 200 ] || die "$url answered $code"
}
PG_BASES=()
[ -n "$GH_PID" ] && PG_BASES=("http://127.0.0.1:$P_GH" "https://127.0.0.1:$P_GT")
for base in "http://127.0.0.1:$P_NGX" "https://127.0.0.1:$P_NGX_TLS" "http://127.0.0.1:$P_VH" \
  "https://127.0.0.1:$P_VT" "${PG_BASES[@]}"; do
  check_200 "$base/item/42"
  check_200 "$base/checkout" -H 'Content-Type: application/json' --data-binary "@$TMP/checkout.json"
done
"$GEN" body --template "$TMP/checkout.tpl" --seed 777 > "$TMP/one-unique.json"
check_200 "http://127.0.0.1:$P_VH/checkout" -H 'Content-Type: application/json' --data-binary "@$TMP/one-unique.json"

# ------------------------------------------------------------------------------------------------ measuring
# Scenario table: id | label | transport | url | body mode | pid whose CPU/RSS is measured | skip reason
SCEN=()
add() { SCEN+=("$1|$2|$3|$4|$5|$6|${7:-}"); }
add direct-http "direct to upstream" http "http://127.0.0.1:$P_UP/item/42" get "" ""
add direct-tls "direct to upstream" tls "https://127.0.0.1:$P_UP_TLS/item/42" get "" ""
add nginx-http "nginx reverse proxy (GET)" http "http://127.0.0.1:$P_NGX/item/42" get "$NGX_PID" ""
add nginx-tls "nginx reverse proxy (GET)" tls "https://127.0.0.1:$P_NGX_TLS/item/42" get "$NGX_PID" ""
add nginxpost-http "nginx reverse proxy (1 KiB checkout POST)" http "http://127.0.0.1:$P_NGX/checkout" static \
  "$NGX_PID" ""
add nginxpost-tls "nginx reverse proxy (1 KiB checkout POST)" tls "https://127.0.0.1:$P_NGX_TLS/checkout" static \
  "$NGX_PID" ""
add pass-http "veil pass-through (GET, no route, unmatched = detect)" http "http://127.0.0.1:$P_VH/item/42" get "$VH_PID" ""
add pass-tls "veil pass-through (GET, no route, unmatched = detect)" tls "https://127.0.0.1:$P_VT/item/42" get "$VT_PID" ""
# The same 1 KiB POST on a path no route matches. With `unmatched = detect` (the default) its card, IBAN, e-mail
# and phone are found and tokenised: it costs what a checkout costs. With `unmatched = pass` it is streamed through
# untouched: against the checkout rows that shows what tokenising costs on its own (the "same POST" ratios);
# against nginx's POST row, the proxies on the same request.
add passpost-http "veil pass-through (1 KiB checkout POST, no route, unmatched = detect)" http "http://127.0.0.1:$P_VH/orders" static \
  "$VH_PID" ""
add passpost-tls "veil pass-through (1 KiB checkout POST, no route, unmatched = detect)" tls "https://127.0.0.1:$P_VT/orders" static \
  "$VT_PID" ""
add unpass-http "veil pass-through (GET, no route, unmatched = pass)" http "http://127.0.0.1:$P_VP/item/42" get \
  "$VP_PID" ""
add unpasspost-http "veil pass-through (1 KiB checkout POST, no route, unmatched = pass)" http \
  "http://127.0.0.1:$P_VP/orders" static "$VP_PID" ""
add rep-http "veil checkout, 4 fields, repeated values" http "http://127.0.0.1:$P_VH/checkout" static "$VH_PID" ""
add rep-tls "veil checkout, 4 fields, repeated values" tls "https://127.0.0.1:$P_VT/checkout" static "$VT_PID" ""
add uniq-http "veil checkout, 4 fields, unique values (SQLite)" http "http://127.0.0.1:$P_VH/checkout" unique \
  "$VH_PID" ""
add uniq-tls "veil checkout, 4 fields, unique values (SQLite)" tls "https://127.0.0.1:$P_VT/checkout" unique \
  "$VT_PID" ""
add uniq1-http "veil checkout, 4 fields, 1 new value (SQLite)" http "http://127.0.0.1:$P_VH/checkout" unique1 \
  "$VH_PID" ""
add uniq1-tls "veil checkout, 4 fields, 1 new value (SQLite)" tls "https://127.0.0.1:$P_VT/checkout" unique1 \
  "$VT_PID" ""
if [ -n "$VB_PID" ]; then
  add passB-http "VEIL_BIN_B: veil pass-through (GET, no route, unmatched = detect)" http \
    "http://127.0.0.1:$P_VB/item/42" get "$VB_PID" "$VB_NOTE"
  add repB-http "VEIL_BIN_B: veil checkout, 4 fields, repeated values" http "http://127.0.0.1:$P_VB/checkout" static \
    "$VB_PID" "$VB_NOTE"
  add uniqB-http "VEIL_BIN_B: veil checkout, 4 fields, unique values (SQLite)" http \
    "http://127.0.0.1:$P_VB/checkout" unique "$VB_PID" "$VB_NOTE"
fi
add pgrep-http "veil checkout, 4 fields, repeated values (PostgreSQL)" http "http://127.0.0.1:$P_GH/checkout" \
  static "$GH_PID" "$PG_NOTE"
add pgrep-tls "veil checkout, 4 fields, repeated values (PostgreSQL)" tls "https://127.0.0.1:$P_GT/checkout" \
  static "$GT_PID" "$PG_NOTE"
add pg-http "veil checkout, 4 fields, unique values (PostgreSQL)" http "http://127.0.0.1:$P_GH/checkout" unique \
  "$GH_PID" "$PG_NOTE"
add pg-tls "veil checkout, 4 fields, unique values (PostgreSQL)" tls "https://127.0.0.1:$P_GT/checkout" unique \
  "$GT_PID" "$PG_NOTE"
add pg1-http "veil checkout, 4 fields, 1 new value (PostgreSQL)" http "http://127.0.0.1:$P_GH/checkout" unique1 \
  "$GH_PID" "$PG_NOTE"
add pg1-tls "veil checkout, 4 fields, 1 new value (PostgreSQL)" tls "https://127.0.0.1:$P_GT/checkout" unique1 \
  "$GT_PID" "$PG_NOTE"

# SCENARIOS: the others are not run.
if [ -n "$SCENARIOS" ]; then
  for i in "${!SCEN[@]}"; do
    IFS='|' read -r id label tr url mode pid skip <<< "${SCEN[$i]}"
    if [[ ",$SCENARIOS," != *",$id,"* ]] && [ -z "$skip" ]; then
      SCEN[$i]="$id|$label|$tr|$url|$mode|$pid|not selected (SCENARIOS)"
    fi
  done
fi

RAW=$TMP/raw.jsonl
: > "$RAW"

# CPU ticks (utime+stime) of a process and its children processes (nginx workers), all threads included.
cpu_ticks() {
  local total=0 p f
  for p in "$1" $(pgrep -P "$1" || true); do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    # shellcheck disable=SC2086 # split the stat fields on purpose
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
# Peak RSS (KiB) of the process that does the work: veil itself, or nginx's single worker.
work_pid() { local c; c=$(pgrep -P "$1" | head -n 1 || true); echo "${c:-$1}"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$(work_pid "$1")/status"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(work_pid "$1")/status"; }
CLK_TCK=$(getconf CLK_TCK)

# The process a scenario measures, now (the RSS pass restarts them).
proxy_pid() {
  case $1 in
    direct-*) echo "" ;;
    nginx*) echo "$NGX_PID" ;;
    pg*-http) echo "$GH_PID" ;;
    pg*-tls) echo "$GT_PID" ;;
    unpass*-http) echo "$VP_PID" ;;
    *B-http) echo "$VB_PID" ;;
    *-http) echo "$VH_PID" ;;
    *-tls) echo "$VT_PID" ;;
  esac
}
# restart_proxy ID: a fresh process of the proxy that scenario measures (same config, same store), ready.
restart_proxy() {
  local old
  old=$(proxy_pid "$1")
  [ -n "$old" ] || return 0
  kill "$old" 2>/dev/null || true
  wait "$old" 2>/dev/null || true
  case $1 in
    nginx*)
      start_nginx_proxy
      for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$P_NGX/" >/dev/null 2>&1 && break; sleep 0.1; done
      [ -n "$(pgrep -P "$NGX_PID" | head -n 1)" ] || die "nginx did not restart"
      return 0 ;;
    pg*-http) start_veil veil-pg-http "$P_GH_ADMIN"; GH_PID=$STARTED_PID ;;
    pg*-tls) start_veil veil-pg-tls "$P_GT_ADMIN"; GT_PID=$STARTED_PID ;;
    unpass*-http) start_veil veil-pass-http "$P_VP_ADMIN"; VP_PID=$STARTED_PID ;;
    *B-http) start_veil veil-b-http "$P_VB_ADMIN" "$VEIL_BIN_B"; VB_PID=$STARTED_PID ;;
    *-http) start_veil veil-http "$P_VH_ADMIN"; VH_PID=$STARTED_PID ;;
    *-tls) start_veil veil-tls "$P_VT_ADMIN"; VT_PID=$STARTED_PID ;;
  esac
  [ -n "$STARTED_PID" ] || die "veil did not restart for $1"
}

# run_wrk URL MODE CONNS SECONDS -> the RESULT JSON line
run_wrk() {
  local file="" seed
  seed=$(python3 -c "import random; print(random.randrange(10**12))")
  local mode=$2
  case $2 in static) file=$TMP/checkout.json ;; unique) file=$TMP/checkout.tpl ;; unique1) file=$TMP/checkout1.tpl; mode=unique ;; esac
  LOAD_MODE=$mode LOAD_FILE=$file LOAD_SEED=$seed "${PIN_LOAD[@]}" wrk -t1 -c"$3" -d"$4"s --timeout 10s \
    -s "$ROOT/benches/load_wrk.lua" "$1" > "$TMP/wrk.out" 2>&1 || true
  if grep -q '^RESULT ' "$TMP/wrk.out"; then
    grep '^RESULT ' "$TMP/wrk.out" | sed 's/^RESULT //'
  else
    log "wrk failed on $1: $(tail -n 2 "$TMP/wrk.out" | tr '\n' ' ')"
    echo '{"requests":0,"duration_us":0,"failed":true}'
  fi
}

# run_rate URL MODE RATE -> load_gen JSON line
run_rate() {
  local args=()
  case $2 in
    static) args=(--method POST --body-file "$TMP/checkout.json") ;;
    unique) args=(--method POST --template "$TMP/checkout.tpl") ;;
    unique1) args=(--method POST --template "$TMP/checkout1.tpl") ;;
  esac
  "${PIN_LOAD[@]}" "$GEN" rate --url "$1" --rate "$3" --duration "$LAT_DURATION" --connections "$CONNS" \
    --cacert "$TMP/ca.crt" "${args[@]}" 2>>"$TMP/gen.err" || echo '{"requests":0,"failed":true}'
}

# measure ROUND ID URL MODE PID [RATE] -> appends one JSON record to RAW
measure() {
  local round=$1 id=$2 url=$3 mode=$4 pid=$5 rate=${6:-0} c0=0 c1=0 hwm=0 wrk lat='null'
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  wrk=$(run_wrk "$url" "$mode" "$CONNS" "$DURATION")
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
  if [ "$rate" != 0 ]; then lat=$(run_rate "$url" "$mode" "$rate"); fi
  printf '{"round":%s,"id":"%s","wrk":%s,"cpu_s":%s,"hwm_kib":%s,"rate":%s,"lat":%s}\n' "$round" "$id" "$wrk" \
    "$(python3 -c "print(($c1 - $c0) / $CLK_TCK)")" "${hwm:-0}" "$rate" "$lat" >> "$RAW"
  log "round $round $id: $(python3 -c "import json,sys; w=json.loads(sys.argv[1]); print(round(w.get('requests',0)/max(w.get('duration_us',1),1)*1e6), 'req/s', w.get('non2xx',0), 'non-2xx')" "$wrk")"
}

# Idle TLS connections: RSS delta per connection (run last, on restarted processes).
idle_rss() { # ID PORT PID
  local before after out
  before=$(rss_kib "$3")
  coproc IDLE { "${PIN_LOAD[@]}" "$GEN" idle --url "https://127.0.0.1:$2/" --connections "$IDLE_CONNS" \
    --duration 60 --cacert "$TMP/ca.crt" 2>&1; }
  read -r -t 60 out <&"${IDLE[0]}" || out=""
  sleep 0.5
  after=$(rss_kib "$3")
  # How many of them the server still holds open at that moment (a server that dropped idle connections early
  # would look cheaper than it is).
  open=$(ss -Htn state established "( sport = :$2 )" | wc -l)
  eval "exec ${IDLE[1]}>&-"
  wait "$IDLE_PID" 2>/dev/null || true
  printf '{"idle":"%s","conns":%s,"open":%s,"ready":"%s","before_kib":%s,"after_kib":%s}\n' "$1" "$IDLE_CONNS" \
    "$open" "$out" "$before" "$after" >> "$RAW"
  log "idle TLS $1: $out, $open open at the server, RSS $before -> $after KiB"
}

log "warm-up and calibration (each scenario once, $(python3 -c "print(max(1, $DURATION // 2))") s)"
for s in "${SCEN[@]}"; do
  IFS='|' read -r id label tr url mode pid skip <<< "$s"
  [ -z "$skip" ] || continue
  w=$(run_wrk "$url" "$mode" "$CONNS" "$(python3 -c "print(max(1, $DURATION // 2))")")
  printf '{"warmup":"%s","wrk":%s}\n' "$id" "$w" >> "$RAW"
done
rate_of() { python3 - "$RAW" "$1" "$RATE_FRACTION" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("warmup") == sys.argv[2]:
        w = r["wrk"]
        print(max(100, int(w["requests"] / (w["duration_us"] / 1e6) * float(sys.argv[3]) // 100 * 100)))
EOF
}
# Without nginx's warm-up (SCENARIOS) and no RATE_* given: no fixed-rate runs (rate 0).
RATE_HTTP=${RATE_HTTP:-$(rate_of nginx-http)}
RATE_TLS=${RATE_TLS:-$(rate_of nginx-tls)}
RATE_HTTP=${RATE_HTTP:-0}
RATE_TLS=${RATE_TLS:-0}
log "fixed rates for latency: HTTP $RATE_HTTP req/s, TLS $RATE_TLS req/s (0: not run)"

n=${#SCEN[@]}
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for i in $(seq 0 $((n - 1))); do
    IFS='|' read -r id label tr url mode pid skip <<< "${SCEN[$(((i + round - 1) % n))]}"
    [ -z "$skip" ] || continue
    rate=$RATE_HTTP; [ "$tr" = tls ] && rate=$RATE_TLS
    measure "$round" "$id" "$url" "$mode" "$(proxy_pid "$id")" "$rate"
  done
done

# What veil did: tokenised fields per class (a scenario that silently stopped tokenising would show here).
# Collected before the RSS pass restarts the processes (their counters start over).
METRICS_OF=(veil-http:$P_VH_ADMIN veil-tls:$P_VT_ADMIN)
[ -z "$GH_PID" ] || METRICS_OF+=(veil-pg-http:$P_GH_ADMIN veil-pg-tls:$P_GT_ADMIN)
for name in "${METRICS_OF[@]}"; do
  curl -fsS "http://127.0.0.1:${name#*:}/metrics" | grep -E '^veil_(fields_total|requests_total)' \
    > "$TMP/metrics-${name%%:*}.txt" || true
  # Distinct values the store holds per class: shows that the "unique" runs really sent fresh values.
  [[ $name == veil-pg-* ]] && continue
  python3 - "$TMP/${name%%:*}/vault.db" >> "$TMP/metrics-${name%%:*}.txt" <<'EOF' || true
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT class, COUNT(*) FROM tokens GROUP BY class ORDER BY class").fetchall()
print("store tokens per class: " + ", ".join(f"{c}={n}" for c, n in rows))
EOF
done

RSS_SECONDS=$(python3 -c "print(max(1, min($DURATION, 5)))")
log "peak RSS on fresh processes at $CONNS and $BIG_CONNS connections"
for s in "${SCEN[@]}"; do
  IFS='|' read -r id label tr url mode pid skip <<< "$s"
  [ -z "$skip" ] && [ -n "$pid" ] || continue
  for c in "$CONNS" "$BIG_CONNS"; do
    restart_proxy "$id"
    w=$(run_wrk "$url" "$mode" "$c" "$RSS_SECONDS")
    printf '{"rss":"%s","conns":%s,"hwm_kib":%s,"wrk":%s}\n' "$id" "$c" "$(hwm_kib "$(proxy_pid "$id")")" "$w" >> "$RAW"
    log "peak RSS $id at $c connections (fresh process): $(hwm_kib "$(proxy_pid "$id")") KiB"
  done
done

# Idle TLS connections, last, on freshly restarted proxies (a process that served 1,000 connections keeps heap it
# would reuse for idle ones, and an idle test before the rounds would inflate their peak RSS).
log "idle TLS connections ($IDLE_CONNS), on restarted nginx and veil"
restart_proxy nginx-tls
restart_proxy pass-tls
# A few requests first so both have their TLS and connection state initialised.
run_wrk "https://127.0.0.1:$P_NGX_TLS/item/42" get 4 1 >/dev/null
run_wrk "https://127.0.0.1:$P_VT/item/42" get 4 1 >/dev/null
sleep 1
idle_rss nginx-tls "$P_NGX_TLS" "$NGX_PID"
idle_rss veil-tls "$P_VT" "$VT_PID"

# PERF=1: sample veil's stacks (perf record, cpu-clock, DWARF call graphs) under load in a few scenarios, and
# count syscalls and context switches per request (perf-summary.txt); reports kept in the temp
# dir (use KEEP_TMP=1), e.g. perf-uniq-http.txt. Not part of RESULTS.md.
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  for s in "${SCEN[@]}"; do
    IFS='|' read -r id label tr url mode pid skip <<< "$s"
    case $id in nginx-http | nginx-tls | pass-http | pass-tls | passpost-http | rep-http | uniq-http | uniq1-http) ;; *) continue ;; esac
    [ -z "$skip" ] || continue
    pid=$(proxy_pid "$id")
    log "perf: $id"
    # Syscalls and context switches per request (the proxy's worker process, all threads).
    perf stat -e raw_syscalls:sys_enter,context-switches -x, -p "$(work_pid "$pid")" -o "$TMP/perf-$id-stat.csv" \
      -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
    w=$(run_wrk "$url" "$mode" "$CONNS" "$DURATION")
    wait "$perf_pid" || true
    python3 - "$TMP/perf-$id-stat.csv" "$w" "$id" >> "$TMP/perf-summary.txt" <<'EOF' || true
import json, sys
w = json.loads(sys.argv[2])
counts = {l.split(",")[2]: float(l.split(",")[0]) for l in open(sys.argv[1]) if l[:1].isdigit()}
n = max(w.get("requests", 0), 1)
print(f"{sys.argv[3]}: {n / (w['duration_us'] / 1e6):.0f} req/s, "
      f"{counts.get('raw_syscalls:sys_enter', 0) / n:.1f} syscalls/request, "
      f"{counts.get('context-switches', 0) / n:.2f} context switches/request")
EOF
    [[ $id == nginx-* ]] && continue
    perf record -F 299 --call-graph dwarf,32768 -p "$pid" -o "$TMP/perf-$id.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
    run_wrk "$url" "$mode" "$CONNS" "$DURATION" >/dev/null
    wait "$perf_pid" || true
    perf report -i "$TMP/perf-$id.data" --stdio --no-children --percent-limit 1 > "$TMP/perf-$id.txt" 2>/dev/null || true
    perf report -i "$TMP/perf-$id.data" --stdio --children --no-call-graph --percent-limit 2 \
      > "$TMP/perf-$id-children.txt" 2>/dev/null || true
  done
fi

# ------------------------------------------------------------------------------------------------ report
{
  printf '{"meta":{'
  printf '"date":"%s",' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '"nproc":%s,' "$(nproc)"
  printf '"cpu":"%s",' "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  printf '"kernel":"%s",' "$(uname -sr)"
  printf '"loadavg_start":"%s",' "${LOADAVG_START:-}"
  printf '"loadavg_end":"%s",' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '"veil_rev":"%s",' "$VEIL_REV"
  printf '"veil_bin_b":"%s",' "${VEIL_BIN_B:-}"
  printf '"rustc":"%s",' "$(rustc --version)"
  printf '"nginx":"%s",' "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
  printf '"wrk":"%s",' "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  printf '"openssl":"%s",' "$(openssl version)"
  printf '"command":"%s",' "$COMMAND"
  printf '"duration":%s,"lat_duration":%s,"rounds":%s,"conns":%s,"big_conns":%s,"idle_conns":%s,' \
    "$DURATION" "$LAT_DURATION" "$ROUNDS" "$CONNS" "$BIG_CONNS" "$IDLE_CONNS"
  printf '"rate_fraction":%s,"rate_http":%s,"rate_tls":%s,"body_bytes":%s,' "$RATE_FRACTION" "$RATE_HTTP" \
    "$RATE_TLS" "$BODY_BYTES"
  printf '"pg_note":"%s",' "$PG_NOTE"
  printf '"pg_pin":"%s"' "$PG_PIN"
  printf '}}\n'
} >> "$RAW"
for s in "${SCEN[@]}"; do
  IFS='|' read -r id label tr url mode pid skip <<< "$s"
  python3 -c 'import json,sys; print(json.dumps({"scenario": sys.argv[1], "label": sys.argv[2], "transport": sys.argv[3], "skip": sys.argv[4]}))' \
    "$id" "$label" "$tr" "$skip" >> "$RAW"
done
python3 "$ROOT/benches/load_report.py" "$RAW" "$TMP"/metrics-*.txt > "$OUT"
log "wrote $OUT"
