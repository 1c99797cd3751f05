#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a repeatable figure for comparing
# hot-path changes on a noisy machine (wall-clock benchmarks: scripts/bench.sh).
#   scripts/instructions.sh [SECONDS]     (default 5; needs valgrind, nginx, wrk, curl)
# Optional environment: CONFIG_TEMPLATE (a gatehouse YAML file in which @UPSTREAM_PORT@ is
# replaced; default: one service, route `/`, no plugins) and REQUEST_HEADERS (newline-separated
# `Name: value` lines sent with every request), as scripts/bench-auth.sh uses them.
# Layout: nginx upstream (return 200, the bench harness's config) and gatehouse under callgrind,
# loopback only. Counters are zeroed after a warm-up, so start-up is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
[[ $SECS =~ ^[0-9]+$ ]] && [ "$SECS" -ge 1 ] && [ "$SECS" -le 120 ] || { echo "SECONDS must be 1..120" >&2; exit 2; }
for t in valgrind callgrind_control nginx wrk curl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
HARNESS=${BENCH_HARNESS:-$(cd .. && pwd)/shared/bench}
[ -n "${GATEHOUSE_BIN:-}" ] || cargo build --release -q
BIN=${GATEHOUSE_BIN:-./target/release/gatehouse}
W=$(mktemp -d /tmp/gatehouse-instr.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; sleep 0.3; for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && cp "$W"/cg.out.* "$KEEP" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP=$(port); UP2=$(port); GW=$(port)
mkdir -p "$W/up"
sed -e "s#@RUNDIR@#$W#g" -e "s#@UPSTREAM_PORT@#$UP#g" -e "s#@UPSTREAM_H2_PORT@#$UP2#g" "$HARNESS/conf/upstream-nginx.conf.tmpl" > "$W/up.conf"
( exec setsid nginx -p "$W/up" -e "$W/up.err" -c "$W/up.conf" ) >"$W/up.log" 2>&1 </dev/null & PIDS+=($!)
if [ -n "${CONFIG_TEMPLATE:-}" ]; then
  sed -e "s#@UPSTREAM_PORT@#$UP#g" "$CONFIG_TEMPLATE" > "$W/gw.yaml"
else
  printf '_format_version: "3.0"\nservices:\n- name: bench\n  url: http://127.0.0.1:%s\n  routes: [{paths: [/]}]\n' "$UP" > "$W/gw.yaml"
fi
HDR=()
while IFS= read -r h; do [ -n "$h" ] && HDR+=(-H "$h"); done <<< "${REQUEST_HEADERS:-}"
( export GATEHOUSE_WORKERS=1 GATEHOUSE_LOG=warn; exec setsid valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" \
    "$BIN" run -c "$W/gw.yaml" --proxy-listen "127.0.0.1:$GW" ) >"$W/gw.log" 2>&1 </dev/null & PIDS+=($!)
for _ in $(seq 1 150); do curl -s --max-time 2 "${HDR[@]}" "http://127.0.0.1:$GW/" 2>/dev/null | grep -q bench-upstream && break; sleep 0.2; done
wrk -t1 -c16 -d2s "${HDR[@]}" "http://127.0.0.1:$GW/" >/dev/null          # warm-up
callgrind_control -z >/dev/null
REQS=$(wrk -t1 -c16 -d"${SECS}s" "${HDR[@]}" "http://127.0.0.1:$GW/" | awk '/requests in/{print $1}')
callgrind_control -d >/dev/null
sleep 0.5
IR=$(cat "$W"/cg.out.* 2>/dev/null | awk '/^summary:/{s+=$2} END{print s+0}')
echo "requests: $REQS"
echo "instructions: $IR"
awk -v i="$IR" -v r="$REQS" 'BEGIN{ if (r>0) printf "instructions per request: %.0f\n", i/r }'
