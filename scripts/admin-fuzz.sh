#!/usr/bin/env bash
# scripts/admin-fuzz.sh - fuzz the Admin API with schemathesis against a real node.
#
# Builds the gateway (debug), starts `gatehouse run` in database mode on a fresh SQLite file with
# every listener on a free loopback port, seeds it with a small configuration (POST /config: a
# service with a route, an upstream with a target, a consumer with credentials, a plugin), and
# runs schemathesis on the node's own /openapi.json (coverage and fuzzing phases, MAX_EXAMPLES
# cases per operation). Checks: no 5xx (not_a_server_error); status, content type, headers and
# body of every response as described (status_code_conformance, content_type_conformance,
# response_headers_conformance, response_schema_conformance); requests the description rules
# out are refused with a 4xx (negative_data_rejection); a method a path does not answer gets a
# 405 with `Allow` (unsupported_method). A panic in the node's log or its death fails the run too.
# Exits non-zero on any failure; the node is killed and its files removed at the end.
#
# Usage: scripts/admin-fuzz.sh
# Environment: MAX_EXAMPLES (per operation, 10), SEED (random by default), WORKERS (1),
#   FUZZ_NO_BUILD=1, FUZZ_VENV (where schemathesis is installed when missing, default
#   $CARGO_TARGET_DIR/schemathesis-venv), FUZZ_REPORT_DIR (keep schemathesis's JUnit and
#   NDJSON reports there).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET/debug/gatehouse
VENV=${FUZZ_VENV:-$TARGET/schemathesis-venv}
MAX_EXAMPLES=${MAX_EXAMPLES:-10}
# One worker: with two, schemathesis's coverage phase sometimes dies inside Python 3.11's
# ast.parse (`AST constructor recursion depth mismatch`, a CPython bug with threads), which is
# reported as an error of the run, not of the API.
WORKERS=${WORKERS:-1}

die() { echo "admin-fuzz.sh: $*" >&2; exit 2; }
for v in MAX_EXAMPLES WORKERS; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"; done
for tool in curl python3 setsid; do command -v "$tool" >/dev/null || die "missing $tool"; done

WORK=$(mktemp -d /tmp/gatehouse-admin-fuzz.XXXXXX)
NODE_PID=
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
cleanup() { set +e; stop_group "$NODE_PID"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'trap - EXIT; cleanup; exit 130' INT TERM

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then (cd "$REPO" && cargo build --bin gatehouse); fi
[ -x "$BIN" ] || die "no binary at $BIN"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet schemathesis
fi
"$VENV/bin/schemathesis" --version

# Free loopback ports, asked of the kernel (bind to port 0) rather than guessed.
read -r ADMIN_PORT PROXY_PORT UPSTREAM_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
ADMIN=http://127.0.0.1:$ADMIN_PORT

cd "$WORK"
setsid "$BIN" run \
  --database-url "sqlite://$WORK/gatehouse.db" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" \
  --proxy-listen "127.0.0.1:$PROXY_PORT" \
  --proxy-tls-listen off \
  >"$WORK/node.log" 2>&1 </dev/null &
NODE_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$ADMIN/status" 2>/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; die "the node exited"; }
  sleep 0.1
done
curl -fsS -o /dev/null "$ADMIN/status" || { cat "$WORK/node.log" >&2; die "the node did not answer"; }

# The upstream target points at a port nothing listens on: the fuzzer only talks to the Admin
# API, and health checks stay off.
curl -fsS -o /dev/null -H 'Content-Type: application/json' "$ADMIN/config" --data-binary @- <<JSON
{
  "_format_version": "3.0",
  "services": [{
    "name": "s1",
    "url": "http://127.0.0.1:$UPSTREAM_PORT",
    "routes": [{ "name": "r1", "paths": ["/r1"] }]
  }],
  "upstreams": [{ "name": "u1", "targets": [{ "target": "127.0.0.1:$UPSTREAM_PORT" }] }],
  "consumers": [{
    "username": "alice",
    "keyauth_credentials": [{ "key": "alice-key" }],
    "basicauth_credentials": [{ "username": "alice-b", "password": "pw" }],
    "hmacauth_credentials": [{ "username": "alice-h", "secret": "hs" }],
    "jwt_secrets": [{ "key": "alice-iss", "secret": "s3cr3t" }],
    "acls": [{ "group": "admins" }]
  }],
  "plugins": [{
    "name": "request-termination",
    "instance_name": "every",
    "service": "s1",
    "config": { "status_code": 418 }
  }]
}
JSON
echo "node on $ADMIN (log: $WORK/node.log), seeded"

# Random path parameters only ever reach the 404 branch. Half of the generated values for each
# one are taken from the seeded entities instead (natural keys and ids, read back from the
# node), so that reads, updates and deletes of real entities are fuzzed too.
first_id() {
  curl -fsS "$ADMIN/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])'
}
{
  dictionary() {
    local name=$1; shift
    printf '[dictionaries.%s]\nvalues = [' "$name"
    printf '"%s", ' "$@"
    printf ']\n'
  }
  dictionary service s1 "$(first_id services)"
  dictionary route r1 "$(first_id routes)"
  dictionary upstream u1 "$(first_id upstreams)"
  dictionary target "$(first_id targets)" "127.0.0.1:$UPSTREAM_PORT"
  dictionary consumer alice "$(first_id consumers)"
  dictionary plugin every "$(first_id plugins)"
  dictionary key_auth alice-key "$(first_id key-auths)"
  dictionary basic_auth alice-b "$(first_id basic-auths)"
  dictionary hmac_auth alice-h "$(first_id hmac-auths)"
  dictionary jwt alice-iss "$(first_id jwts)"
  dictionary acl admins "$(first_id acls)"
  dictionary name request-termination key-auth rate-limiting
  echo '[parameters]'
  for p in service route upstream target consumer plugin key_auth basic_auth hmac_auth jwt acl \
           name; do
    printf '"path.%s" = { dictionary = "%s", probability = 0.5 }\n' "$p" "$p"
  done
} > "$WORK/schemathesis.toml"

REPORT_DIR=${FUZZ_REPORT_DIR:-$WORK/report}
# Left out:
# - positive_data_acceptance (a request the description allows must get a 2xx): the entity
#   schemas describe fields one by one, and the API rightly refuses what depends on more than
#   one field or on other entities: a route with none of methods/hosts/headers/paths, a
#   service with neither url nor host, a consumer with neither username nor custom_id, a
#   credential of a consumer that does not exist, a certificate whose `cert` is no PEM, an
#   `offset` that is no page token of this node, a service deleted while routes refer to it.
# - missing_required_header, ignored_auth: the Admin API has no required header, and no
#   authentication unless --admin-token is set (tests/it/admin.rs covers it).
CHECKS=${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,unsupported_method}
args=(
  --config-file "$WORK/schemathesis.toml"
  run "$ADMIN/openapi.json"
  --checks "$CHECKS"
  --max-examples "$MAX_EXAMPLES"
  # The stateful phase (links between operations) is left out: the description has no links,
  # and the phases below already reach every operation.
  --phases examples,coverage,fuzzing
  --workers "$WORKERS"
  # A hang is a failure: no Admin API request may take 10 s on a loopback node.
  --request-timeout 10
  --report junit,ndjson --report-dir "$REPORT_DIR"
  --no-color
)
[ -n "${SEED:-}" ] && args+=(--seed "$SEED")
status=0
"$VENV/bin/schemathesis" "${args[@]}" || status=$?

# A panic is a failure even when the client saw an answer.
if grep -q "panicked" "$WORK/node.log"; then
  echo "admin-fuzz.sh: the node panicked:" >&2
  grep -A5 "panicked" "$WORK/node.log" >&2
  status=1
fi
if ! kill -0 "$NODE_PID" 2>/dev/null; then
  echo "admin-fuzz.sh: the node died during the run" >&2
  tail -20 "$WORK/node.log" >&2
  status=1
fi
if [ -n "${FUZZ_REPORT_DIR:-}" ]; then
  cp "$WORK/node.log" "$WORK/schemathesis.toml" "$REPORT_DIR/"
else
  rm -rf "$REPORT_DIR"
fi
exit "$status"
