#!/usr/bin/env bash
# Sends a sample payload to the GitHub example the way GitHub does: the event name in
# X-GitHub-Event, a fresh X-GitHub-Delivery id, and X-Hub-Signature-256 = HMAC-SHA256 of the exact
# bytes sent, keyed with $SECRET (the integration's OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET).
#
#   SECRET=dev-secret examples/github/send.sh push examples/github/samples/push.json
#   SECRET=dev-secret URL=http://127.0.0.1:8000/integration/webhook examples/github/send.sh issues FILE
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: SECRET=... [URL=...] $0 <push|pull_request|issues> <payload.json>" >&2
  exit 2
fi
event=$1
file=$2
: "${SECRET:?set SECRET to the webhook secret of the integration}"
url=${URL:-http://127.0.0.1:8000/integration/webhook}
signature=$(openssl dgst -sha256 -hmac "$SECRET" -r "$file" | cut -d' ' -f1)
delivery=$(cat /proc/sys/kernel/random/uuid)
curl -sS -X POST "$url" \
  -H 'content-type: application/json' \
  -H "x-github-event: $event" \
  -H "x-github-delivery: $delivery" \
  -H "x-hub-signature-256: sha256=$signature" \
  --data-binary @"$file"
echo
