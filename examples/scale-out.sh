#!/usr/bin/env bash
# Scale-out demo: one redis-server, one standalone built-in Port and 3 replicas of the Jira example,
# all on loopback. The samples go to different replicas; any replica may process any of them.
#
#   examples/scale-out.sh            # from the repository root; needs redis-server and curl
#
# Everything runs from a temporary folder, and the script stops what it started (by process id)
# when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in redis-server curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian: apt-get install redis-server curl)" >&2; exit 1; }
done

REDIS_PORT=${REDIS_PORT:-6391}
PORT_PORT=${PORT_PORT:-5111}
FIRST_REPLICA=${FIRST_REPLICA:-8001}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url, what
  for _ in $(seq 1 200); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 did not come up; logs in $work" >&2
  exit 1
}

cargo build -q -p ocean-example-jira
bin=target/debug/ocean-example-jira

echo "== redis-server on 127.0.0.1:$REDIS_PORT (AOF, appendfsync always: a 200 survives a Redis crash)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync always >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis_up=$( (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3) 2>/dev/null || true); [ "$redis_up" = "+PONG" ] && break; sleep 0.1; done

echo "== standalone built-in Port on 127.0.0.1:$PORT_PORT"
OCEAN__LOCAL_PORT__PORT=$PORT_PORT OCEAN__LOCAL_PORT__DATA_DIR="$work/port" \
  "$bin" local-port >"$work/port.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$PORT_PORT/" "the built-in Port"

for i in 0 1 2; do
  port=$((FIRST_REPLICA + i))
  echo "== replica $((i + 1)) on 127.0.0.1:$port"
  OCEAN__APPLICATION__PORT=$port \
  OCEAN__QUEUE__BACKEND=redis \
  OCEAN__QUEUE__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  OCEAN__PORT__BASE_URL="http://127.0.0.1:$PORT_PORT" \
  OCEAN__PORT__CLIENT_ID=demo OCEAN__PORT__CLIENT_SECRET=demo \
  OCEAN__PORT_APP_CONFIG_FILE=examples/jira/.port/resources/port-app-config.yml \
  OCEAN__INTEGRATION__IDENTIFIER=jira-scale-out \
  OCEAN__QUEUE__PATH="$work/queue-$i" \
    "$bin" >"$work/replica-$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do wait_for "http://127.0.0.1:$((FIRST_REPLICA + i))/health/ready" "replica $((i + 1))"; done

send() { # replica number, sample
  local port=$((FIRST_REPLICA + $1 - 1))
  printf '%-22s -> replica %s: ' "$2" "$1"
  curl -s -X POST "http://127.0.0.1:$port/integration/webhook" \
    -H 'content-type: application/json' --data @"examples/jira/samples/$2"
  echo
}
send 1 project_created.json
send 2 issue_created.json
send 3 issue_updated.json

token=$(curl -s -X POST "http://127.0.0.1:$PORT_PORT/v1/auth/access_token" \
  -H 'content-type: application/json' -d '{"clientId":"demo","clientSecret":"demo"}' |
  sed 's/.*"accessToken":"\([^"]*\)".*/\1/')
entity() { curl -fs "http://127.0.0.1:$PORT_PORT/v1/blueprints/$1/entities/$2" -H "authorization: Bearer $token"; }
for _ in $(seq 1 100); do
  entity jiraIssue PROJ-1 >/dev/null 2>&1 && entity jiraProject PROJ >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== entities in the built-in Port"
entity jiraProject PROJ && echo
entity jiraIssue PROJ-1 && echo
per_replica() { # metric pattern
  for i in 0 1 2; do
    printf 'replica %s: ' $((i + 1))
    curl -s "http://127.0.0.1:$((FIRST_REPLICA + i))/metrics" | grep -E "$1" | tr '\n' ' '
    echo
  done
}
echo "== queue figures (the same on every replica)"
per_replica '^ocean_queue_depth '
echo "== jobs each replica ran (any replica takes any event)"
per_replica '^ocean_jobs_total'
