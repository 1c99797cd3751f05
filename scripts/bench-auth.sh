#!/usr/bin/env bash
# scripts/bench-auth.sh - what authentication costs on the request path: gatehouse as a plain
# proxy, with `jwt` (HS256, Kong's consumer model) and with `key-auth`, in one run.
#
# Same layout as the shared harness (../shared/bench/run.sh), whose wrk cannot send headers:
# CPU 0 runs wrk (-t1 -c64, keep-alive) and the upstream (the harness's nginx template: one
# worker answering a ~100-byte JSON body); CPU 1 runs gatehouse with one worker. Every variant
# gets the same request, `Authorization: Bearer <HS256 token>` plus `apikey: <key>`, so the
# bytes on the wire are identical and only the configuration differs. Each round starts each
# variant afresh, warms up, measures, stops it; the order rotates every round. Any non-2xx
# response or socket error fails the run.
#
# Usage: scripts/bench-auth.sh            (ROUNDS=5 DURATION=10 WARMUP=2 CONNS=64 by default)
#        INSTRUCTIONS=1 scripts/bench-auth.sh   also counts instructions per request of each
#        variant under callgrind (scripts/instructions.sh), a figure that noise does not move.
# Environment: ROUNDS, DURATION, WARMUP, CONNS, BENCH_NO_BUILD=1, BASE_PORT (default 28180),
#   LOADGEN_CPU / UPSTREAM_CPU (0), PROXY_CPU (1), BENCH_HARNESS_DIR (../shared/bench).
# Needs nginx and wrk (../shared/bench/setup.sh installs them). Only 127.0.0.1 is used.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS_DIR=${BENCH_HARNESS_DIR:-$REPO/../shared/bench}
BIN=$REPO/target/release/gatehouse
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
LOADGEN_CPU=${LOADGEN_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
BASE_PORT=${BASE_PORT:-28180}
UPSTREAM_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 10))
VARIANTS=(plain jwt key-auth)

die() { echo "bench-auth.sh: $*" >&2; exit 2; }
for v in ROUNDS DURATION WARMUP CONNS BASE_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 50 ] || die "ROUNDS must be 1..50"
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 120 ] || die "DURATION must be 1..120"
for tool in nginx wrk taskset setsid curl ss python3; do
  command -v "$tool" >/dev/null || die "missing $tool (run $HARNESS_DIR/setup.sh)"
done
TEMPLATE=$HARNESS_DIR/conf/upstream-nginx.conf.tmpl
[ -f "$TEMPLATE" ] || die "no upstream template at $TEMPLATE"
for p in "$UPSTREAM_PORT" $((UPSTREAM_PORT + 1)) "$PROXY_PORT"; do
  ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || die "port $p is in use (set BASE_PORT)"
done

WORK=$(mktemp -d /tmp/gatehouse-bench-auth.XXXXXX)
UP_PID=""
GW_PID=""
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
cleanup() { set +e; stop_group "$GW_PID"; stop_group "$UP_PID"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'trap - EXIT; cleanup; exit 130' INT TERM

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && cargo build --release)
fi
[ -x "$BIN" ] || die "no binary at $BIN"
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)

# ------------------------------------------------------------------ upstream
start_upstream "$TEMPLATE" "$WORK" "$UPSTREAM_PORT" "$UPSTREAM_CPU" || die "upstream did not start"
UP_PID=$UPSTREAM_PID

# ------------------------------------------------------------------ credentials and configs
SECRET=bench-secret-$(date +%s)
API_KEY=bench-key-0123456789abcdef
TOKEN=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = {"iss": "bench-issuer", "sub": "bench-user", "exp": int(time.time()) + 86400}
payload = b64(json.dumps(claims).encode())
sig = b64(hmac.new(sys.argv[1].encode(), header + b"." + payload, hashlib.sha256).digest())
print((header + b"." + payload + b"." + sig).decode())
PY
)
write_config() { # variant -> file
  local plugin=""
  case "$1" in
    plain) plugin="" ;;
    jwt) plugin="    plugins: [{name: jwt, config: {claims_to_verify: [exp]}}]" ;;
    key-auth) plugin="    plugins: [{name: key-auth}]" ;;
  esac
  cat > "$WORK/$1.yaml" <<YAML
_format_version: "3.0"
consumers:
  - username: bench-user
    jwt_secrets: [{key: bench-issuer, algorithm: HS256, secret: "$SECRET"}]
    keyauth_credentials: [{key: "$API_KEY"}]
services:
  - name: bench-upstream
    url: http://127.0.0.1:$UPSTREAM_PORT
    routes:
      - name: bench-all
        paths: [/]
$plugin
YAML
}
for v in "${VARIANTS[@]}"; do write_config "$v"; done
HEADERS=(-H "Authorization: Bearer $TOKEN" -H "apikey: $API_KEY")

# ------------------------------------------------------------------ rounds
CSV=$WORK/results.csv
echo "variant,round,rps,p99_ms,non2xx,errors" > "$CSV"
to_ms() { python3 -c 'import re,sys
v=sys.argv[1]; m=re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
print("" if not m else float(m[1])*{"us":0.001,"ms":1,"s":1000}[m[2]])' "$1"; }

for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(( (round - 1) % ${#VARIANTS[@]} ))
  order=("${VARIANTS[@]:$shift_by}" "${VARIANTS[@]:0:$shift_by}")
  for v in "${order[@]}"; do
    GATEHOUSE_WORKERS=1 setsid taskset -c "$PROXY_CPU" "$BIN" run -c "$WORK/$v.yaml" \
      --proxy-listen "127.0.0.1:$PROXY_PORT" >"$WORK/gw-$v.log" 2>&1 </dev/null &
    GW_PID=$!
    ok=0
    for _ in $(seq 1 200); do
      if curl -fsS -o /dev/null "${HEADERS[@]}" "http://127.0.0.1:$PROXY_PORT/" 2>/dev/null; then
        ok=1; break
      fi
      sleep 0.1
    done
    [ "$ok" = 1 ] || { cat "$WORK/gw-$v.log" >&2; die "$v: gatehouse did not answer 200"; }
    url="http://127.0.0.1:$PROXY_PORT/"
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${HEADERS[@]}" "$url" >/dev/null
    raw=$WORK/wrk-$v-$round.txt
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${HEADERS[@]}" "$url" >"$raw"
    stop_group "$GW_PID"; GW_PID=""
    rps=$(awk '/^Requests\/sec:/{print $2}' "$raw")
    p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$raw")")
    non2xx=$(awk '/Non-2xx/{print $NF}' "$raw"); non2xx=${non2xx:-0}
    errors=$(awk '/Socket errors/{s=0; for(i=1;i<=NF;i++) if($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$raw")
    errors=${errors:-0}
    echo "$v,$round,$rps,$p99,$non2xx,$errors" >> "$CSV"
    echo "round $round $v: $rps req/s, p99 $p99 ms, non-2xx $non2xx, errors $errors" >&2
    [ "$non2xx" = 0 ] && [ "$errors" = 0 ] || die "$v: non-2xx or socket errors (see $raw)"
  done
done

# ------------------------------------------------------------------ instructions
if [ "${INSTRUCTIONS:-0}" = 1 ]; then
  for v in "${VARIANTS[@]}"; do
    sed -e "s#http://127.0.0.1:$UPSTREAM_PORT#http://127.0.0.1:@UPSTREAM_PORT@#" "$WORK/$v.yaml" > "$WORK/$v.tmpl"
    n=$(CONFIG_TEMPLATE="$WORK/$v.tmpl" GATEHOUSE_BIN="$BIN" \
        REQUEST_HEADERS=$(printf 'Authorization: Bearer %s\napikey: %s' "$TOKEN" "$API_KEY") \
        "$REPO/scripts/instructions.sh" 5 | awk '/instructions per request/{print $NF}')
    echo "instructions per request, $v: $n" >&2
    echo "$v,$n" >> "$WORK/instructions.csv"
  done
fi

# ------------------------------------------------------------------ report
echo
echo "== gatehouse $REV: authentication cost, medians over $ROUNDS rounds of ${DURATION}s (ratios: median of same-round ratios to plain)"
python3 - "$CSV" <<'PY'
import csv, statistics, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1])))
by = defaultdict(dict)
for r in rows:
    by[r["round"]][r["variant"]] = r
def med(xs): return statistics.median(xs)
print(f"{'variant':10} {'req/s':>10} {'x plain':>8} {'p99 ms':>8} {'x plain':>8}")
for v in ("plain", "jwt", "key-auth"):
    rps = [float(by[k][v]["rps"]) for k in by]
    p99 = [float(by[k][v]["p99_ms"]) for k in by]
    rr = [float(by[k][v]["rps"]) / float(by[k]["plain"]["rps"]) for k in by]
    pr = [float(by[k][v]["p99_ms"]) / float(by[k]["plain"]["p99_ms"]) for k in by]
    print(f"{v:10} {med(rps):>10,.0f} {med(rr):>8.3f} {med(p99):>8.2f} {med(pr):>8.2f}")
PY
if [ -s "$WORK/instructions.csv" ]; then
  echo
  awk -F, 'NR==1{base=$2} {printf "instructions per request  %-9s %8d  (x plain %.3f)\n", $1, $2, $2/base}' "$WORK/instructions.csv"
fi
