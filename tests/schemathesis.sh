#!/usr/bin/env bash
# The JSON API against its own OpenAPI document: schemathesis (PyPI) with every check, on a
# handoff started here with the example config and a bearer token, stopped by its PID.
#
#   tests/schemathesis.sh HANDOFF_BINARY SCHEMATHESIS_BINARY [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
handoff=$1 st=$(realpath "$2") examples=${3:-60}

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=schemathesis-token-$RANDOM$RANDOM$RANDOM$RANDOM
env HANDOFF_LISTEN=127.0.0.1:$port HANDOFF_DATA_DIR="$dir/data" \
  HANDOFF_DASHBOARD__TOKENS="[{ name = 'schemathesis', token_env = 'SCHEMATHESIS_TOKEN', role = 'operator' }]" \
  SCHEMATHESIS_TOKEN="$token" \
  CRM_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw HUBSPOT_CLIENT_SECRET=hubspot-secret-for-tests \
  STRIPE_WEBHOOK_SECRET=whsec_stripe_for_tests GITHUB_WEBHOOK_SECRET=github-secret-for-tests \
  SHOPIFY_WEBHOOK_SECRET=shopify-secret-for-tests ERP_WEBHOOK_SECRET=erp-secret-for-tests \
  "$handoff" serve --config config.example.toml > "$dir/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/serve.log"; exit 1; }
  sleep 0.1
done
# From the temp dir: schemathesis keeps a cache (.schemathesis/) where it runs.
cd "$dir"
"$st" run "http://127.0.0.1:$port/api/v1/openapi.json" --checks all \
  -H "Authorization: Bearer $token" --max-examples "$examples" --no-color
