#!/usr/bin/env bash
# Streams a large download and a large upload through the gateway and reports its peak resident
# memory (VmHWM), to show that bodies are streamed and not buffered. The route has
# `request_buffering: false` and the body limit is lifted (--client-max-body-size 0), as for a
# route meant for large uploads (docs/limits.md).
#   scripts/stream-memory.sh [SIZE_MIB]   (default 1024 = 1 GiB each way)
# Needs: python3, curl. Everything listens on 127.0.0.1 only; every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
[[ $SIZE_MIB =~ ^[0-9]+$ ]] && [ "$SIZE_MIB" -ge 1 ] && [ "$SIZE_MIB" -le 16384 ] || { echo "SIZE_MIB must be 1..16384" >&2; exit 2; }
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/gatehouse
WORK=$(mktemp -d /tmp/gatehouse-stream.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP_PORT=$(free_port); GW_PORT=$(free_port)

cat > "$WORK/upstream.py" <<'PY'
import http.server, sys
CHUNK = b"x" * 65536
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[-1])
        self.send_response(200)
        self.send_header("content-length", str(n))
        self.end_headers()
        while n > 0:
            k = min(n, len(CHUNK)); self.wfile.write(CHUNK[:k]); n -= k
    def do_POST(self):
        total = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline(); break
                left = size
                while left:
                    got = len(self.rfile.read(min(left, 1 << 20))); left -= got; total += got
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length", "0"))
            while left:
                got = len(self.rfile.read(min(left, 1 << 20))); left -= got; total += got
        body = str(total).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/upstream.py" "$UP_PORT" & PIDS+=($!)
cat > "$WORK/gw.yaml" <<YAML
_format_version: "3.0"
services:
- name: big
  url: http://127.0.0.1:$UP_PORT
  routes: [{paths: [/], request_buffering: false}]
YAML
GATEHOUSE_LOG=warn "$BIN" run -c "$WORK/gw.yaml" --proxy-listen "127.0.0.1:$GW_PORT" --workers 1 --client-max-body-size 0 & GW=$!; PIDS+=($GW)
for _ in $(seq 1 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/0")" = 200 ] && break; sleep 0.1; done
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$GW/status"; }
echo "idle: VmRSS $(rss VmRSS) kB"
BYTES=$((SIZE_MIB * 1024 * 1024))
t0=$(date +%s.%N)
got=$(curl -s -o /dev/null -w "%{size_download}" "http://127.0.0.1:$GW_PORT/$BYTES")
t1=$(date +%s.%N)
echo "download: $got bytes in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s; peak VmHWM $(rss VmHWM) kB"
t0=$(date +%s.%N)
sent=$(head -c "$BYTES" /dev/zero | curl -s -T - -X POST "http://127.0.0.1:$GW_PORT/upload")
t1=$(date +%s.%N)
echo "upload: upstream received $sent bytes in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s; peak VmHWM $(rss VmHWM) kB"
[ "$got" = "$BYTES" ] && [ "$sent" = "$BYTES" ] || { echo "size mismatch" >&2; exit 1; }
