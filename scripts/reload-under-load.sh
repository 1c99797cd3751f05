#!/usr/bin/env bash
# scripts/reload-under-load.sh - rewrite the configuration every second under load: the routes
# that stay must not lose a request.
#
# An nginx upstream (the shared harness's template), gatehouse watching its declarative file
# (the default `--watch-config`), and wrk (`-t1 -c32`, keep-alive, GET /stay) for DURATION
# seconds. Every second the file is rewritten with a different set of 50 extra routes (added and
# removed) while `/stay` is kept; each rewrite is a reload. Prints wrk's totals, the number of
# reloads the gateway logged, and fails if any request was not a 2xx.
#
# Usage: scripts/reload-under-load.sh      (DURATION=30 by default)
# Environment: DURATION, BENCH_NO_BUILD=1, BASE_PORT (28380), BENCH_HARNESS_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS_DIR=${BENCH_HARNESS_DIR:-$REPO/../shared/bench}
BIN=$REPO/target/release/gatehouse
DURATION=${DURATION:-30}
BASE_PORT=${BASE_PORT:-28380}
UPSTREAM_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 10))

die() { echo "reload-under-load.sh: $*" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 2 ] && [ "$DURATION" -le 300 ] || die "DURATION must be 2..300"
for tool in nginx wrk curl setsid; do command -v "$tool" >/dev/null || die "missing $tool"; done
TEMPLATE=$HARNESS_DIR/conf/upstream-nginx.conf.tmpl
[ -f "$TEMPLATE" ] || die "no upstream template at $TEMPLATE"

WORK=$(mktemp -d /tmp/gatehouse-reload.XXXXXX)
PIDS=()
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
cleanup() { set +e; for p in "${PIDS[@]}"; do stop_group "$p"; done; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'trap - EXIT; cleanup; exit 130' INT TERM

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then (cd "$REPO" && cargo build --release); fi
[ -x "$BIN" ] || die "no binary at $BIN"

start_upstream "$TEMPLATE" "$WORK" "$UPSTREAM_PORT" || die "upstream did not start"
PIDS+=("$UPSTREAM_PID")

# write_config N: /stay plus 50 routes whose names depend on N (so every rewrite adds and
# removes routes), written atomically (temp file renamed over), as an editor saves.
write_config() {
  local n=$1 tmp=$WORK/gw.yaml.tmp
  {
    echo '_format_version: "3.0"'
    echo 'services:'
    echo '  - name: main'
    echo "    url: http://127.0.0.1:$UPSTREAM_PORT"
    echo '    routes:'
    echo '      - name: stay'
    echo '        paths: [/stay]'
    echo '        strip_path: false'
    for i in $(seq 1 50); do
      echo "      - name: r$n-$i"
      echo "        paths: [/gen-$n/route-$i]"
    done
  } > "$tmp"
  mv "$tmp" "$WORK/gw.yaml"
}
write_config 0
GATEHOUSE_WORKERS=1 setsid "$BIN" run -c "$WORK/gw.yaml" --proxy-listen "127.0.0.1:$PROXY_PORT" \
  >"$WORK/gw.log" 2>&1 </dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/stay" 2>/dev/null && break; sleep 0.1; done

wrk -t1 -c32 -d"${DURATION}s" --latency "http://127.0.0.1:$PROXY_PORT/stay" > "$WORK/wrk.txt" &
WRK=$!
for n in $(seq 1 $((DURATION - 1))); do
  sleep 1
  write_config "$n"
done
wait "$WRK"
sleep 0.5
# The last generation's routes answer (404 would mean the last rewrite was not applied).
last=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/gen-$((DURATION - 1))/route-7")

cat "$WORK/wrk.txt"
reloads=$(grep -c "configuration reloaded" "$WORK/gw.log" || true)
rejected=$(grep -c "configuration rejected" "$WORK/gw.log" || true)
echo
echo "rewrites: $((DURATION - 1)), reloads logged: $reloads, rejected: $rejected, the newest generation's route answers: $last"
non2xx=$(awk '/Non-2xx/{print $NF}' "$WORK/wrk.txt"); non2xx=${non2xx:-0}
errors=$(awk '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$WORK/wrk.txt"); errors=${errors:-0}
echo "failed requests on /stay: non-2xx $non2xx, socket errors $errors"
[ "$non2xx" = 0 ] && [ "$errors" = 0 ] && [ "$last" = 200 ]
