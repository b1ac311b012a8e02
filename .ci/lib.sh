# Shared by the CI scripts that run a live vault (.ci/schemathesis.sh,
# .ci/openapi.sh). Source it from the repository root:
#
#   . .ci/lib.sh
#   ci_venv target/some-venv "package==1.2" other-package
#   ci_vault_bin                # builds the debug binary unless PII_VAULT_BIN is set
#   ci_vault_start              # a fresh vault: SQLite in a temp dir, a free port
#   token=$(ci_token helpdesk)  # a machine client of that role, and its token
#
# ci_vault_start sets VAULT_BASE (http://127.0.0.1:PORT), VAULT_WORK (the
# temp dir, holding server.log) and VAULT_PID, exports the settings so that
# CLI commands use the same database, and stops the vault and removes the
# temp dir on exit.

PY=${PY:-$(command -v python3.11 || command -v python3)}

# ci_venv DIR REQUIREMENT... — a venv holding these requirements; pip runs
# only when one of them is missing, so a second run installs nothing.
ci_venv() {
  local venv=$1
  shift
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  if ! "$venv/bin/python" - "$@" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version, PackageNotFoundError
for req in sys.argv[1:]:
    name, _, pinned = req.partition("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if pinned and have != pinned:
        sys.exit(1)
EOF
    "$venv/bin/pip" install -q --disable-pip-version-check "$@"
  fi
}

ci_vault_bin() {
  # Not exported: the vault reads every PII_VAULT_* variable as a setting
  # and refuses unknown ones.
  local bin=${PII_VAULT_BIN:-}
  unset PII_VAULT_BIN
  PII_VAULT_BIN=$bin
  if [ -z "$PII_VAULT_BIN" ]; then
    cargo build --locked -q
    PII_VAULT_BIN=target/debug/pii-vault
  fi
}

VAULT_PID=
VAULT_WORK=
ci_vault_stop() {
  if [ -n "$VAULT_PID" ]; then
    kill "$VAULT_PID" 2>/dev/null || true
    wait "$VAULT_PID" 2>/dev/null || true
    VAULT_PID=
  fi
  if [ -n "$VAULT_WORK" ]; then rm -rf "$VAULT_WORK"; fi
}

ci_vault_start() {
  VAULT_WORK=$(mktemp -d)
  trap ci_vault_stop EXIT
  export PII_VAULT_DATABASE_URL="sqlite://$VAULT_WORK/vault.db"
  export PII_VAULT_MASTER_KEY
  PII_VAULT_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
  export PII_VAULT_LISTEN=127.0.0.1:0
  export PII_VAULT_POLICY_DIR="$PWD/policies"
  export PII_VAULT_TOMBSTONE_FILE="$VAULT_WORK/vault.tombstones"
  export RUST_LOG=${RUST_LOG:-warn}

  "$PII_VAULT_BIN" serve 2>"$VAULT_WORK/server.log" &
  VAULT_PID=$!
  local addr=
  for _ in $(seq 1 120); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$VAULT_WORK/server.log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.5
  done
  [ -n "$addr" ] || { cat "$VAULT_WORK/server.log"; echo "server did not start" >&2; exit 1; }
  VAULT_BASE="http://$addr"
  echo "vault at $VAULT_BASE"
}

# ci_client ROLE NAME — creates a machine client; prints its credentials as
# JSON ({"client_id": ..., "client_secret": ...}).
ci_client() {
  "$PII_VAULT_BIN" clients add --name "$2" --role "$1" --json
}

# ci_token ROLE [NAME] — a new client of that role, and a token for it.
ci_token() {
  local creds
  creds=$(ci_client "$1" "${2:-ci-$1}")
  curl -fsS "$VAULT_BASE/v1/token" -H 'content-type: application/json' \
    -d "$("$PY" -c 'import json,sys; c=json.load(sys.stdin); print(json.dumps({"grant_type":"client_credentials","client_id":c["client_id"],"client_secret":c["client_secret"]}))' <<<"$creds")" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# ci_server_log_clean — fails when the vault logged a panic or internal error.
ci_server_log_clean() {
  if grep -q "panicked\|internal error" "$VAULT_WORK/server.log"; then
    echo "the server logged internal errors:" >&2
    grep "panicked\|internal error" "$VAULT_WORK/server.log" | head -20 >&2
    return 1
  fi
}
