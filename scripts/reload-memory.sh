#!/usr/bin/env bash
# scripts/reload-memory.sh - resident memory across many reloads of a large configuration.
#
# Gatehouse starts on a configuration of ROUTES routes (one service each half of them, regex
# and prefix paths, a plugin on every tenth route), then is sent RELOADS SIGHUPs, each a full
# parse, compile and swap, waiting for every one to be logged. VmRSS is read after start-up (and
# one warm-up reload) and at the end. Kong once grew from 110 MB to 714 MB over 100 pushes; the
# target here is to stay within 10 %.
#
# Usage: scripts/reload-memory.sh        (ROUTES=1000 RELOADS=1000 by default)
# Environment: ROUTES, RELOADS, BENCH_NO_BUILD=1, PORT (28480).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release/gatehouse
ROUTES=${ROUTES:-1000}
RELOADS=${RELOADS:-1000}
PORT=${PORT:-28480}
die() { echo "reload-memory.sh: $*" >&2; exit 2; }
for v in ROUTES RELOADS PORT; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"; done
[ "$RELOADS" -le 10000 ] || die "RELOADS must be at most 10000"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then (cd "$REPO" && cargo build --release); fi
[ -x "$BIN" ] || die "no binary at $BIN"

WORK=$(mktemp -d /tmp/gatehouse-reload-mem.XXXXXX)
GW=""
cleanup() { set +e; [ -n "$GW" ] && kill -TERM "$GW" 2>/dev/null && wait "$GW" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

{
  echo '_format_version: "3.0"'
  echo 'services:'
  for s in $(seq 1 $((ROUTES / 2))); do
    echo "  - name: svc-$s"
    echo "    url: http://127.0.0.1:9/svc/$s"
    echo '    routes:'
    for r in 1 2; do
      i=$(( (s - 1) * 2 + r ))
      if [ $((i % 2)) = 0 ]; then
        echo "      - {name: route-$i, paths: [\"~/api/v1/items/$i/(?<id>[0-9]+)$\"], methods: [GET]}"
      else
        echo "      - name: route-$i"
        echo "        paths: [/api/v2/things-$i]"
        if [ $((i % 10)) = 1 ]; then
          echo "        plugins: [{name: request-transformer, config: {add: {headers: [\"X-Route: $i\"]}}}]"
        fi
      fi
    done
  done
} > "$WORK/gw.yaml"

GATEHOUSE_WORKERS=1 GATEHOUSE_WATCH_CONFIG=false "$BIN" run -c "$WORK/gw.yaml" \
  --proxy-listen "127.0.0.1:$PORT" > "$WORK/gw.log" 2>&1 &
GW=$!
for _ in $(seq 1 100); do grep -q "gatehouse started" "$WORK/gw.log" 2>/dev/null && break; sleep 0.1; done
grep -q "gatehouse started" "$WORK/gw.log" || { cat "$WORK/gw.log" >&2; die "did not start"; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$GW/status"; }
reloaded() { grep -c "configuration reloaded" "$WORK/gw.log" || true; }
reload_once() {
  local want=$(( $(reloaded) + 1 ))
  kill -HUP "$GW"
  for _ in $(seq 1 200); do [ "$(reloaded)" -ge "$want" ] && return 0; sleep 0.02; done
  die "reload $want was not logged"
}
reload_once
before=$(rss)
started=$(date +%s.%N)
for _ in $(seq 1 "$RELOADS"); do reload_once; done
took=$(echo "$(date +%s.%N) - $started" | bc)
after=$(rss)
echo "routes: $ROUTES, reloads: $RELOADS in ${took}s"
echo "VmRSS after start-up: $before kB; after the reloads: $after kB ($(echo "scale=1; ($after - $before) * 100 / $before" | bc) %)"
[ $(( after * 100 )) -le $(( before * 110 )) ]
