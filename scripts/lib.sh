# scripts/lib.sh - shared by the benchmark scripts (sourced, not run).

# stop_group PID: stop a process group started with setsid, by its recorded PID (TERM, then
# KILL after 5 s).
stop_group() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start_upstream TEMPLATE DIR PORT [CPU]: the shared harness's upstream nginx (its
# upstream-nginx.conf.tmpl) on 127.0.0.1:PORT, its files under DIR, pinned to CPU if given, in
# its own session; waits until it answers. Sets UPSTREAM_PID.
start_upstream() {
  local template=$1 dir=$2 port=$3 cpu=${4:-}
  mkdir -p "$dir"/upstream-{body,proxy,fastcgi,uwsgi,scgi}
  sed -e "s#@RUNDIR@#$dir#g" -e "s#@UPSTREAM_PORT@#$port#g" \
      -e "s#@UPSTREAM_H2_PORT@#$((port + 1))#g" "$template" > "$dir/upstream.conf"
  local pin=()
  [ -n "$cpu" ] && pin=(taskset -c "$cpu")
  setsid "${pin[@]}" nginx -c "$dir/upstream.conf" -p "$dir" >"$dir/upstream.log" 2>&1 </dev/null &
  UPSTREAM_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "upstream nginx did not start on port $port" >&2
  return 1
}
