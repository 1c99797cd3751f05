#!/usr/bin/env bash
# scripts/bench.sh - plain reverse-proxy benchmark of gatehouse against nginx and HAProxy.
#
# Builds the release binary, then runs the shared harness (../shared/bench/run.sh, see its
# README) with the targets nginx, haproxy and gatehouse, HTTP/1.1 keep-alive, no TLS.
# gatehouse runs one worker on the harness's proxy CPU with a config generated from the
# harness's PROXY_PORT / UPSTREAM_PORT: one service (url http://127.0.0.1:$UPSTREAM_PORT)
# with one route (paths: [/]), no plugins. Afterwards it prints, per proxy, the medians of
# req/s per proxy core and of p99 latency with their ratios to nginx, and gatehouse's idle
# resident memory (VmRSS 2 s after start, same config, one worker).
#
# Upstream keep-alive: gatehouse runs with its defaults (upstream_keepalive_max_requests 1000,
# Kong's), while the harness's nginx proxy keeps upstream connections for 10,000,000 requests.
# Set GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS=10000000 to give both the same limit.
#
# Usage: scripts/bench.sh [run.sh options...]      e.g. scripts/bench.sh --rounds 3
#   Extra arguments are passed to run.sh (--rounds, --duration, --nice, --out, ...).
# Environment:
#   BENCH_HARNESS     path to run.sh (default: <repo>/../shared/bench/run.sh)
#   BENCH_RESULTS     results parent directory (default /tmp/bench-results), unless --out is given
#   BENCH_NO_BUILD=1  skip `cargo build --release` (use the existing target/release/gatehouse)
#   GATEHOUSE_WORKERS worker threads for gatehouse (default 1: the harness gives it one CPU)
#   PROXY_CPU         CPU for gatehouse in the idle-memory measurement (default 1, as run.sh)
#   IDLE_PORT         port for the idle-memory measurement (default BASE_PORT+10 = 28090; free)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$(dirname "${BASH_SOURCE[0]}")/../../shared/bench/run.sh}
BIN=$REPO/target/release/gatehouse
WORKERS=${GATEHOUSE_WORKERS:-1}
PROXY_CPU=${PROXY_CPU:-1}
IDLE_UPSTREAM_PORT=${BASE_PORT:-28080}   # the harness's upstream port (not contacted when idle)
IDLE_PORT=${IDLE_PORT:-$((IDLE_UPSTREAM_PORT + 10))}   # the harness's port for the first --proxy

die() { echo "bench.sh: $*" >&2; exit 2; }

[ -f "$HARNESS" ] || die "harness not found: $HARNESS (set BENCH_HARNESS)"
HARNESS=$(cd "$(dirname "$HARNESS")" && pwd)/$(basename "$HARNESS")
[[ $WORKERS =~ ^[0-9]+$ ]] || die "GATEHOUSE_WORKERS must be a number"
[[ $IDLE_PORT =~ ^[0-9]+$ ]] || die "IDLE_PORT must be a number"
for tool in python3 taskset setsid curl ss; do
  command -v "$tool" >/dev/null || die "missing $tool (run the harness's setup.sh)"
done

# Results directory: honour a passed-through --out, else choose one so we can read it back.
OUT=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --out) OUT=${args[$((i + 1))]:-} ;;
    -h|--help) exec "$HARNESS" --help ;;
  esac
done
if [ -z "$OUT" ]; then
  OUT=${BENCH_RESULTS:-/tmp/bench-results}/$(date +%Y%m%d-%H%M%S)-gatehouse
  args+=(--out "$OUT")
fi

WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
IDLE_PID=""
cleanup() {
  set +e
  if [ -n "$IDLE_PID" ]; then
    kill -TERM "$IDLE_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$IDLE_PID" 2>/dev/null
    wait "$IDLE_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'trap - EXIT; cleanup; exit 130' INT TERM

# ------------------------------------------------------------------ build
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "bench.sh: cargo build --release" >&2
  (cd "$REPO" && cargo build --release)
fi
[ -x "$BIN" ] || die "no binary at $BIN"
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)

# ------------------------------------------------------------------ launcher
# Run by the harness under `bash -c` with PROXY_PORT / UPSTREAM_PORT set: writes the
# config from them, then execs gatehouse (so the harness's PID is gatehouse's).
LAUNCH=$WORK/start-gatehouse.sh
cat > "$LAUNCH" <<EOF
#!/usr/bin/env bash
set -euo pipefail
: "\${PROXY_PORT:?}" "\${UPSTREAM_PORT:?}"
conf=$WORK/gatehouse-\$PROXY_PORT.yaml
cat > "\$conf" <<YAML
_format_version: "3.0"
services:
  - name: bench-upstream
    url: http://127.0.0.1:\$UPSTREAM_PORT
    routes:
      - name: bench-all
        paths: [/]
YAML
export GATEHOUSE_WORKERS=$WORKERS
${GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS:+export GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS=$GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS}
exec "$BIN" run -c "\$conf" --proxy-listen "127.0.0.1:\$PROXY_PORT"
EOF
chmod +x "$LAUNCH"

# ------------------------------------------------------------------ idle memory
# Same config (the harness's ports), one worker, pinned like the harness pins the proxy.
if ss -Hltn "sport = :$IDLE_PORT" 2>/dev/null | grep -q .; then
  die "port $IDLE_PORT is in use (set IDLE_PORT)"
fi
( PROXY_PORT=$IDLE_PORT UPSTREAM_PORT=$IDLE_UPSTREAM_PORT exec setsid taskset -c "$PROXY_CPU" "$LAUNCH" ) \
  >"$WORK/idle.log" 2>&1 </dev/null &
IDLE_PID=$!
ready=0
for _ in $(seq 1 100); do   # <= 10 s until the listener is up
  kill -0 "$IDLE_PID" 2>/dev/null || break
  if ss -Hltn "sport = :$IDLE_PORT" 2>/dev/null | grep -q .; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { cat "$WORK/idle.log" >&2; die "gatehouse did not start for the idle measurement"; }
sleep 2
IDLE_RSS_KB=$(awk '/^VmRSS:/{print $2}' "/proc/$IDLE_PID/status")
IDLE_THREADS=$(awk '/^Threads:/{print $2}' "/proc/$IDLE_PID/status")
kill -TERM "$IDLE_PID" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$IDLE_PID" 2>/dev/null || true
wait "$IDLE_PID" 2>/dev/null || true
IDLE_PID=""
echo "bench.sh: gatehouse idle VmRSS ${IDLE_RSS_KB} kB (${IDLE_THREADS} threads, GATEHOUSE_WORKERS=$WORKERS)" >&2

# ------------------------------------------------------------------ harness
"$HARNESS" --only nginx,haproxy,gatehouse --no-tls \
  --label "gatehouse $REV, GATEHOUSE_WORKERS=$WORKERS, upstream max requests ${GATEHOUSE_UPSTREAM_KEEPALIVE_MAX_REQUESTS:-1000 (default)}, plain proxy route /" \
  --proxy "gatehouse=exec $LAUNCH" \
  "${args[@]+"${args[@]}"}"

CSV=$OUT/results.csv
[ -s "$CSV" ] || die "no results at $CSV"

# ------------------------------------------------------------------ report
echo
echo "== gatehouse $REV: per-proxy medians over rounds (ratios: median of same-round ratios to nginx)"
python3 - "$CSV" "$IDLE_RSS_KB" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, idle_kb = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path, newline="")))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

by_name = defaultdict(list)
by_round = defaultdict(dict)
for r in rows:
    by_name[r["name"]].append(r)
    by_round[r["round"]][r["name"]] = r

def ratios(name, field):
    out = []
    for r in by_name[name]:
        ref = by_round[r["round"]].get("nginx")
        a, b = num(r[field]), num(ref[field]) if ref else None
        if a is not None and b:
            out.append(a / b)
    return med(out)

def f(x, fmt):
    return "-" if x is None else format(x, fmt)

hdr = ("proxy", "rounds", "req/s", "proxy CPU %", "req/s per proxy core", "x nginx",
       "p99 ms", "x nginx", "errors")
lines = []
order = [n for n in ("nginx", "haproxy", "gatehouse") if n in by_name] + \
        [n for n in by_name if n not in ("nginx", "haproxy", "gatehouse")]
for n in order:
    rs = by_name[n]
    errs = sum(int(num(r["errors"]) or 0) + int(num(r["non2xx"]) or 0) for r in rs)
    lines.append((n, str(len(rs)),
                  f(med(num(r["rps"]) for r in rs), ",.0f"),
                  f(med(num(r["proxy_cpu_pct"]) for r in rs), ".0f"),
                  f(med(num(r["rps_per_proxy_core"]) for r in rs), ",.0f"),
                  f(ratios(n, "rps_per_proxy_core"), ".2f"),
                  f(med(num(r["p99_ms"]) for r in rs), ".3f"),
                  f(ratios(n, "p99_ms"), ".2f"),
                  str(errs)))
w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(hdr)]
print("  ".join(h.ljust(x) for h, x in zip(hdr, w)))
print("  ".join("-" * x for x in w))
for l in lines:
    print("  ".join(c.ljust(x) for c, x in zip(l, w)))
print()
print(f"gatehouse idle VmRSS: {int(idle_kb):,} kB ({int(idle_kb) / 1024:.1f} MiB)")
PY
echo "results: $OUT"
