#!/usr/bin/env bash
# scripts/failover.sh - lose one backend under load: zero failed requests is the goal.
#
# Three upstream nginx instances (the shared harness's upstream template: `return 200` with a
# ~100-byte body) behind one gatehouse upstream with Kong's active and passive health checks and
# the default connect retries. wrk (`-t1 -c32`, keep-alive, GET) runs for DURATION seconds; at
# STOP_AT seconds the first backend is stopped (nginx fast shutdown: its connections close).
# Prints wrk's totals (requests, non-2xx, socket errors) and how many requests each backend
# served (nginx stub_status, read just before the stop for the stopped one).
#
# Usage: scripts/failover.sh              (DURATION=20 STOP_AT=7 by default)
# Environment: DURATION, STOP_AT, BENCH_NO_BUILD=1, BASE_PORT (28280), BENCH_HARNESS_DIR.
# Needs nginx, wrk, curl (../shared/bench/setup.sh). Only 127.0.0.1 is used.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS_DIR=${BENCH_HARNESS_DIR:-$REPO/../shared/bench}
BIN=$REPO/target/release/gatehouse
DURATION=${DURATION:-20}
STOP_AT=${STOP_AT:-7}
BASE_PORT=${BASE_PORT:-28280}
PROXY_PORT=$((BASE_PORT + 10))

die() { echo "failover.sh: $*" >&2; exit 2; }
for v in DURATION STOP_AT BASE_PORT; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"; done
[ "$STOP_AT" -lt "$DURATION" ] || die "STOP_AT must be less than DURATION"
[ "$DURATION" -le 120 ] || die "DURATION must be at most 120"
for tool in nginx wrk curl setsid; do command -v "$tool" >/dev/null || die "missing $tool"; done
TEMPLATE=$HARNESS_DIR/conf/upstream-nginx.conf.tmpl
[ -f "$TEMPLATE" ] || die "no upstream template at $TEMPLATE"

WORK=$(mktemp -d /tmp/gatehouse-failover.XXXXXX)
PIDS=()
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
cleanup() { set +e; for p in "${PIDS[@]}"; do stop_group "$p"; done; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'trap - EXIT; cleanup; exit 130' INT TERM

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then (cd "$REPO" && cargo build --release); fi
[ -x "$BIN" ] || die "no binary at $BIN"

ports=()
for i in 0 1 2; do
  port=$((BASE_PORT + 2 * i))
  start_upstream "$TEMPLATE" "$WORK/up$i" "$port" || die "backend $i did not start"
  PIDS+=("$UPSTREAM_PID")
  ports+=("$port")
done

cat > "$WORK/gw.yaml" <<YAML
_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      active:
        http_path: /
        timeout: 1
        healthy: {interval: 1, successes: 2}
        unhealthy: {interval: 0.5, tcp_failures: 1, http_failures: 2, timeouts: 2}
      passive:
        unhealthy: {tcp_failures: 1, timeouts: 2, http_failures: 5}
    targets:
      - target: 127.0.0.1:${ports[0]}
      - target: 127.0.0.1:${ports[1]}
      - target: 127.0.0.1:${ports[2]}
services:
  - name: s
    host: pool
    routes: [{paths: [/]}]
YAML
GATEHOUSE_WORKERS=1 setsid "$BIN" run -c "$WORK/gw.yaml" --proxy-listen "127.0.0.1:$PROXY_PORT" \
  >"$WORK/gw.log" 2>&1 </dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/" 2>/dev/null && break; sleep 0.1; done

served() { curl -fsS "http://127.0.0.1:$1/_bench_status" 2>/dev/null | awk 'NR==3{print $3}'; }
before=()
for port in "${ports[@]}"; do before+=("$(served "$port")"); done

wrk -t1 -c32 -d"${DURATION}s" --latency "http://127.0.0.1:$PROXY_PORT/" > "$WORK/wrk.txt" &
WRK=$!
sleep "$STOP_AT"
stopped_served=$(served "${ports[0]}")
stop_group "${PIDS[0]}"
echo "failover.sh: stopped backend 127.0.0.1:${ports[0]} at ${STOP_AT}s" >&2
wait "$WRK"

cat "$WORK/wrk.txt"
echo
echo "== per backend (requests served during the run; stub_status counts include the probes)"
for i in 0 1 2; do
  if [ "$i" = 0 ]; then now=$stopped_served; else now=$(served "${ports[$i]}"); fi
  echo "backend $i 127.0.0.1:${ports[$i]}: $((now - before[i]))$([ "$i" = 0 ] && echo " (until stopped at ${STOP_AT}s)")"
done
grep -E "UNHEALTHY|HEALTHY|request failed" "$WORK/gw.log" | sed 's/^/gateway log: /' | head -20
non2xx=$(awk '/Non-2xx/{print $NF}' "$WORK/wrk.txt"); non2xx=${non2xx:-0}
errors=$(awk '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$WORK/wrk.txt"); errors=${errors:-0}
echo "failed requests: non-2xx $non2xx, socket errors $errors"
[ "$non2xx" = 0 ] && [ "$errors" = 0 ]
