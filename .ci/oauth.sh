#!/usr/bin/env bash
# Stock OAuth 2.0 clients against a fresh vault (SQLite in a temp dir, a free
# port): authlib's OAuth2Session with its defaults fetches a token and uses
# it; PyJWT's PyJWKClient verifies a token against the published JWKS
# (.ci/oauth_clients.py). Python packages go into a venv under target/.
#
#   .ci/oauth.sh
#   PII_VAULT_BIN=target/release/pii-vault .ci/oauth.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/oauth-venv
PY=$(command -v python3.11 || command -v python3)

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import authlib, jwt, requests, cryptography' 2>/dev/null; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check authlib requests 'pyjwt[crypto]'
fi

# The vault reads every PII_VAULT_* variable as a setting: keep this one out.
bin=${PII_VAULT_BIN:-}
unset PII_VAULT_BIN
if [ -z "$bin" ]; then
  cargo build --locked -q
  bin=target/debug/pii-vault
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PII_VAULT_DATABASE_URL="sqlite://$work/vault.db"
export PII_VAULT_MASTER_KEY
PII_VAULT_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export PII_VAULT_LISTEN="127.0.0.1:$port"
export PII_VAULT_POLICY_DIR="$PWD/policies"
export PII_VAULT_TOMBSTONE_FILE="$work/vault.tombstones"
export RUST_LOG=${RUST_LOG:-warn}
base="http://127.0.0.1:$port"

"$bin" serve 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "server exited" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$base/healthz" >/dev/null || { cat "$work/server.log"; echo "server did not start" >&2; exit 1; }
echo "vault at $base"

creds=$("$bin" clients add --name oauth-helpdesk --role helpdesk --json)
client_id=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$creds")
client_secret=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$creds")

"$VENV/bin/python" .ci/oauth_clients.py "$base" "$client_id" "$client_secret"
echo "oauth clients: ok"
