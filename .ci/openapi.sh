#!/usr/bin/env bash
# The vault's /openapi.json, checked the way integrators use it: a fresh
# vault (SQLite in a temp dir, a free port) serves the document;
# openapi-spec-validator must find no error; openapi-python-client must
# generate a client without a warning; and a short script with that client
# gets a token, creates a customer and reads it back for a purpose.
#
#   .ci/openapi.sh
#   PII_VAULT_BIN=target/release/pii-vault .ci/openapi.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VALIDATOR_VERSION=${VALIDATOR_VERSION:-0.9.0}
CLIENT_GEN_VERSION=${CLIENT_GEN_VERSION:-0.29.1}
VENV=target/openapi-venv
. .ci/lib.sh

ci_venv "$VENV" "openapi-spec-validator==$VALIDATOR_VERSION" "openapi-python-client==$CLIENT_GEN_VERSION"

ci_vault_bin
ci_vault_start

out=target/openapi-client
rm -rf "$out"
mkdir -p "$out"
curl -fsS "$VAULT_BASE/openapi.json" -o "$out/openapi.json"

echo "==> openapi-spec-validator"
"$VENV/bin/openapi-spec-validator" --validation-errors all "$out/openapi.json"

echo "==> openapi-python-client generate"
# No formatters run afterwards (post_hooks: none): the client is used as
# generated, and nothing beyond the two packages above is needed.
"$VENV/bin/openapi-python-client" generate \
  --path "$out/openapi.json" \
  --config .ci/openapi/client-config.yaml \
  --meta none \
  --output-path "$out/pii_vault_client" \
  --fail-on-warning

echo "==> the generated client against the vault"
ci_client helpdesk ci-openapi-helpdesk >"$VAULT_WORK/helpdesk.json"
PYTHONPATH="$out" "$VENV/bin/python" .ci/openapi/client_smoke.py "$VAULT_BASE" "$VAULT_WORK/helpdesk.json"

ci_server_log_clean
echo "openapi: ok"
