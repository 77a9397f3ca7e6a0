#!/usr/bin/env bash
# Instructions per request by component, with callgrind (issue 25): veil (release build, its line tables) runs
# under `valgrind --tool=callgrind` with instrumentation off; after a warm-up, it is switched on for a wrk run of
# SECONDS_EACH at CONNS connections (64, as benches/load.sh) and dumped; benches/callgrind_components.py then sums
# every instruction by the source file it came from (inlined code counts where it was written: hyper's code
# inlined into veil's counts as hyper) and divides by the requests served. All threads of the process are counted
# (the SQLite writer, the audit writer, blocking-pool threads); the kernel is not (callgrind sees user space only).
# Valgrind does not emulate SHA-NI: SHA-256 runs its portable code here, several times the instructions it takes
# on a CPU with SHA-NI (the real run's share is smaller than the table's).
#
#   bash benches/callgrind.sh                         # pass-http rep-http uniq-http, 8 s each
#   SCENARIOS="pass-tls rep-tls uniq1-http" SECONDS_EACH=5 bash benches/callgrind.sh
#
# Scenarios: pass (GET, no route), rep (the 1 KiB checkout, four fields, the same values every request), uniq
# (four new values a request, SQLite, durable), uniq1 (one new value a request), each -http or -tls. The bodies
# and the route are those of benches/load.sh. Environment: SCENARIOS, SECONDS_EACH (8), CONNS (64), VEIL_BIN (a
# built veil; else this tree is built in release into CARGO_TARGET_DIR or target/), OUT (a directory for the
# callgrind.out files and reports; default a temp dir, kept), PROXY_CPU (0) LOAD_CPU (1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SCENARIOS=${SCENARIOS:-"pass-http rep-http uniq-http"}
SECONDS_EACH=${SECONDS_EACH:-8}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '[callgrind %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in valgrind callgrind_control wrk openssl curl python3 taskset; do
  command -v "$tool" >/dev/null || die "needs $tool (apt-get install valgrind wrk openssl curl python3 util-linux)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "needs nginx (apt-get install nginx)"
if [ -n "${VEIL_BIN:-}" ]; then
  VEIL=$VEIL_BIN
else
  cargo build --release --locked --quiet
  VEIL=$TARGET/release/veil
fi
cargo build --release --locked --quiet --manifest-path benches/load_gen/Cargo.toml --target-dir "$TARGET"
GEN=$TARGET/release/veil-load-gen

OUT=${OUT:-$(mktemp -d /tmp/veil-callgrind.XXXXXX)}
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/veil-cg-run.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
log "reports in $OUT"

read -r P_UP P_PROXY P_VAULT P_ADMIN < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

(
  cd "$TMP"
  openssl ecparam -name prime256v1 -genkey -noout -out server.ec.key 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in server.ec.key -out server.key
  openssl req -x509 -new -key server.key -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -out server.crt 2>/dev/null
)
# The checkout template and bodies of benches/load.sh.
sed -n "/^cat > \"\$TMP\/checkout.tpl\" <<'EOF'$/,/^EOF$/p" benches/load.sh | sed '1d;$d' > "$TMP/checkout.tpl"
[ -s "$TMP/checkout.tpl" ] || die "cannot read the checkout template from benches/load.sh"
"$GEN" body --template "$TMP/checkout.tpl" --seed 4242424242 > "$TMP/checkout.json"
sed 's/{EMAIL}/{R_EMAIL}/; s/{IBAN}/{R_IBAN}/; s/{PHONE}/{R_PHONE}/; s/{CUST}/{R_CUST}/' "$TMP/checkout.tpl" \
  > "$TMP/checkout1.tpl"

mkdir -p "$TMP/up/logs"
cat > "$TMP/up/nginx.conf" <<EOF
worker_processes 1;
error_log $TMP/up/logs/error.log warn;
pid $TMP/up/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $TMP/up/body;
  server { listen 127.0.0.1:$P_UP; location / { default_type application/json; return 200 '{"ok":true}'; } }
}
EOF
taskset -c "$LOAD_CPU" "$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" -g 'daemon off;' 2>>"$TMP/up/logs/stderr" &
PIDS+=("$!")

"$VEIL" keygen --out "$TMP/master.key" >/dev/null
# veil_config TLS(0|1): the route of benches/load.sh.
veil_config() {
  rm -rf "$TMP/veil"
  mkdir -p "$TMP/veil"
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nupstream = "http://127.0.0.1:%s"\n' "$P_PROXY" "$P_UP"
    printf 'max_connections_per_client = 1000000\nmax_pending_per_client = 1000000\n'
    [ "$1" = 0 ] || printf '[proxy.tls]\ncert = "%s"\nkey = "%s"\n' "$TMP/server.crt" "$TMP/server.key"
    cat <<EOF

[vault]
listen = "127.0.0.1:$P_VAULT"
store = "sqlite://$TMP/veil/vault.db"
master_key_file = "$TMP/master.key"
audit_log = "$TMP/veil/audit.jsonl"

[admin]
listen = "127.0.0.1:$P_ADMIN"

[[caller]]
name = "bench"
api_key_sha256 = "$(printf %s "bench-$RANDOM$RANDOM" | sha256sum | cut -d' ' -f1)"
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
  } > "$TMP/veil/veil.toml"
}

# run_wrk URL MODE SECONDS -> requests served
run_wrk() {
  local file="" mode=$2
  case $2 in static) file=$TMP/checkout.json ;; unique) file=$TMP/checkout.tpl ;; unique1) file=$TMP/checkout1.tpl; mode=unique ;; esac
  LOAD_MODE=$mode LOAD_FILE=$file LOAD_SEED=$((RANDOM * 100000 + RANDOM)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" \
    -d"$3"s --timeout 30s -s "$ROOT/benches/load_wrk.lua" "$1" > "$TMP/wrk.out" 2>&1 || true
  python3 -c '
import json, sys
for l in open(sys.argv[1]):
    if l.startswith("RESULT "):
        r = json.loads(l[7:])
        bad = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        print(r["requests"] if bad == 0 else f"ERR {bad} errors")
        break
else:
    print("ERR wrk failed")' "$TMP/wrk.out"
}

for scen in $SCENARIOS; do
  kind=${scen%-*}
  tr=${scen##*-}
  case $kind in
    pass) path=/item/42; mode=get ;;
    rep) path=/checkout; mode=static ;;
    uniq) path=/checkout; mode=unique ;;
    uniq1) path=/checkout; mode=unique1 ;;
    *) die "unknown scenario $scen" ;;
  esac
  case $tr in http) tls=0; url=http://127.0.0.1:$P_PROXY$path ;; tls) tls=1; url=https://127.0.0.1:$P_PROXY$path ;;
    *) die "unknown transport in $scen" ;; esac
  veil_config "$tls"
  log "$scen: veil under callgrind"
  (cd "$TMP/veil" && VEIL_LOG=warn exec taskset -c "$PROXY_CPU" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out.$scen" "$VEIL" run -c veil.toml) >"$TMP/veil/stdout" 2>"$TMP/veil/stderr" &
  vpid=$!
  PIDS+=("$vpid")
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null 2>&1 && break
    kill -0 "$vpid" 2>/dev/null || die "veil did not start: $(tail -n 5 "$TMP/veil/stderr")"
    sleep 0.2
  done
  # One request first: a proxy that refuses the body is a setup error, not a measurement.
  if [ "$mode" != get ]; then
    code=$(curl -sS -o "$TMP/first.out" -w '%{http_code}' -k -H 'Content-Type: application/json' \
      --data-binary "@$TMP/checkout.json" "$url") || code=000
    [ "$code" = 200 ] || die "$scen: the checkout answered $code: $(head -c 300 "$TMP/first.out")"
  fi
  # Warm-up (connections, caches, the store's first pages), then the counted run.
  # uniq1: long enough for all 4096 returning customers to be known (under valgrind, a few hundred requests/s).
  warm_s=3
  [ "$kind" != uniq1 ] || warm_s=${UNIQ1_WARM:-40}
  warm=$(run_wrk "$url" "$mode" "$warm_s")
  [[ $warm != ERR* ]] || die "$scen warm-up: $warm: $(curl -sS -k -H "Content-Type: application/json" --data-binary "@$TMP/checkout.json" "$url" | head -c 300)"
  callgrind_control -i on "$vpid" >/dev/null
  n=$(run_wrk "$url" "$mode" "$SECONDS_EACH")
  callgrind_control -d "$vpid" >/dev/null
  callgrind_control -i off "$vpid" >/dev/null
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  [[ $n != ERR* ]] || die "$scen: $n"
  # callgrind_control -d writes the dump as <file>.<n>; the final one at exit holds nothing collected.
  dump=$(ls -t "$OUT/callgrind.out.$scen".* 2>/dev/null | grep -v '\.txt$' | head -n 1)
  [ -n "$dump" ] || die "no callgrind dump for $scen"
  python3 "$ROOT/benches/callgrind_components.py" "$dump" "$n" "$scen" > "$OUT/$scen.json"
  log "$scen: $n requests counted"
done
python3 "$ROOT/benches/callgrind_components.py" --table "$OUT"/*.json > "$OUT/table.md"
cat "$OUT/table.md"
log "table: $OUT/table.md (per scenario: $OUT/<scenario>.json, with the top functions)"
