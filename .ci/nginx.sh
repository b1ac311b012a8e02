#!/usr/bin/env bash
# deploy/nginx.conf in front of a real vault, over HTTPS: the customer's
# routes reach the vault, every other route is refused by nginx, and the
# vault takes the customer's address from X-Forwarded-For (trusted_proxies).
#
# nginx runs in the foreground as a plain child of this script (not under
# systemd), with its own prefix, temp directories and a self-signed
# certificate, on 127.0.0.2; the "customers" connect from 127.0.0.3 and
# 127.0.0.4, so the address the vault records cannot be nginx's own.
#
# Usage: .ci/nginx.sh [BINARY]   (default: target/debug/pii-vault, built)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
for tool in openssl curl jq python3; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet
  bin="$repo/target/debug/pii-vault"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/pii-vault-nginx.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The vault, trusting the proxy on 127.0.0.1, two anonymous filings per
# client address and hour.
vault_port=$(free_port)
export PII_VAULT_LISTEN=127.0.0.1:$vault_port
export PII_VAULT_DATABASE_URL=sqlite://$work/vault.db
export PII_VAULT_POLICY_DIR=$repo/policies
export PII_VAULT_TRUSTED_PROXIES='["127.0.0.1/32"]'
export PII_VAULT_INTAKE_PER_SOURCE_PER_HOUR=2
"$bin" serve >"$work/vault.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$vault_port/healthz" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$vault_port/healthz" >/dev/null || { cat "$work/vault.log"; exit 1; }

# A self-signed certificate for vault.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=vault.test -addext subjectAltName=DNS:vault.test \
  -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null

# deploy/nginx.conf with this run's addresses, ports and files.
https_port=$(free_port)
http_port=$(free_port)
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
chmod 1777 "$work/nginx/tmp"
sed -e "s#server 127.0.0.1:8080;#server 127.0.0.1:$vault_port;#" \
    -e "s#listen 443 ssl#listen 127.0.0.2:$https_port ssl#" \
    -e "s#listen 80;#listen 127.0.0.2:$http_port;#" \
    -e "s#/etc/pii-vault/tls/#$work/#" \
    -e "s#/var/log/nginx/error.log#$work/nginx/logs/error.log#" \
    -e "s#/run/nginx.pid#$work/nginx/nginx.pid#" \
    -e "s#^http {#http {\n    client_body_temp_path $work/nginx/tmp/body;\n    proxy_temp_path $work/nginx/tmp/proxy;\n    fastcgi_temp_path $work/nginx/tmp/fastcgi;\n    uwsgi_temp_path $work/nginx/tmp/uwsgi;\n    scgi_temp_path $work/nginx/tmp/scgi;#" \
    deploy/nginx.conf >"$work/nginx/nginx.conf"
for from in 'server 127.0.0.1:8080;' 'listen 443 ssl' 'listen 80;' '/etc/pii-vault/tls/'; do
  if grep -qF "$from" "$work/nginx/nginx.conf"; then
    echo "deploy/nginx.conf changed shape: '$from' was not rewritten" >&2
    exit 1
  fi
done
"$nginx" -t -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log"
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 1 30); do
  curl -s -o /dev/null --resolve "vault.test:$https_port:127.0.0.2" --cacert "$work/fullchain.pem" \
    "https://vault.test:$https_port/" && break
  sleep 0.5
done

base=https://vault.test:$https_port
# call FROM METHOD PATH [curl args…]: prints "STATUS REACHED_VAULT" where
# REACHED_VAULT says whether the vault answered (its x-request-id header).
call() {
  local from=$1 method=$2 path=$3
  shift 3
  curl -s -o "$work/body" -D "$work/headers" --interface "$from" \
    --resolve "vault.test:$https_port:127.0.0.2" --cacert "$work/fullchain.pem" \
    -X "$method" "$@" "$base$path" -w '%{http_code}' >"$work/status"
  local vault=no
  grep -qi '^x-request-id:' "$work/headers" && vault=yes
  echo "$(cat "$work/status") $vault"
}
expect() {
  local want=$1 got=$2 what=$3
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: expected '$want', got '$got'" >&2
    cat "$work/body" >&2 || true
    exit 1
  fi
  echo "ok: $what ($got)"
}
file_request() {
  call "$1" POST /v1/requests -H 'content-type: application/json' \
    -d '{"kind": "access", "regulation": "gdpr", "identifier": {"field": "email", "value": "ada@example.com"}}'
}

echo "--- exposed to customers"
expect "202 yes" "$(file_request 127.0.0.3)" "POST /v1/requests"
rid=$(jq -r .id "$work/body")
rtoken=$(jq -r .request_token "$work/body")
expect "200 yes" "$(call 127.0.0.3 GET "/v1/requests/$rid" -H "authorization: Bearer $rtoken")" \
  "GET /v1/requests/{id} with the request token"
got=$(call 127.0.0.3 POST "/v1/requests/$rid/verify" -H "authorization: Bearer $rtoken" \
  -H 'content-type: application/json' -d '{"code": "00000000"}')
expect "yes" "${got#* }" "POST /v1/requests/{id}/verify reaches the vault (${got% *})"
got=$(call 127.0.0.3 GET "/v1/requests/$rid/export" -H "authorization: Bearer $rtoken")
expect "yes" "${got#* }" "GET /v1/requests/{id}/export reaches the vault (${got% *})"
got=$(call 127.0.0.3 GET /privacy/)
expect "yes" "${got#* }" "GET /privacy/ reaches the vault (${got% *})"
# Behind the proxy (X-Forwarded-Proto: https from a trusted address) the
# privacy center's cookies are Secure.
set_cookie=$(grep -i '^set-cookie: pv_csrf=' "$work/headers" | tr -d '\r')
case "$set_cookie" in
  *"; Secure") echo "ok: the privacy center's cookie is Secure behind the proxy" ;;
  *) echo "FAIL: expected a Secure pv_csrf cookie, got '$set_cookie'" >&2; exit 1 ;;
esac
expect "200 yes" "$(call 127.0.0.3 GET /static/pages.css)" "GET /static/pages.css (the pages' style sheet)"
expect "301 no" "$(curl -s -o /dev/null -D "$work/headers" -w '%{http_code}' "http://127.0.0.2:$http_port/privacy/") no" \
  "plain HTTP redirects to HTTPS"

echo "--- internal: refused by nginx, never reaching the vault"
for route in "GET /v1/requests" "POST /v1/token" "GET /v1/audit" "GET /v1/outbox" \
  "GET /v1/customers/$rid" "POST /v1/requests/$rid/approve" "POST /v1/requests/$rid/deny" \
  "DELETE /v1/requests/$rid" "GET /v1/policy"; do
  expect "403 no" "$(call 127.0.0.3 ${route% *} "${route#* }")" "$route"
done
for route in "GET /metrics" "GET /openapi.json" "GET /healthz" "GET /readyz" "GET /console/" \
  "GET /.well-known/openid-configuration"; do
  expect "404 no" "$(call 127.0.0.3 ${route% *} "${route#* }")" "$route"
done

echo "--- the vault sees the customer's address, not nginx's"
expect "202 yes" "$(file_request 127.0.0.3)" "a second filing from 127.0.0.3"
expect "429 yes" "$(file_request 127.0.0.3)" "a third filing from 127.0.0.3 (intake limit 2 per address)"
expect "202 yes" "$(file_request 127.0.0.4)" "a filing from 127.0.0.4, another address"
# The audit trail links the filings of one address (a keyed hash of it):
# two distinct addresses among the accepted filings.
creds=$("$bin" clients add --name ci-auditor --role auditor --json)
token=$(curl -s "http://127.0.0.1:$vault_port/v1/token" -H 'content-type: application/json' \
  -d "$(jq -c '{grant_type: "client_credentials", client_id, client_secret}' <<<"$creds")" | jq -r .access_token)
sources=$(curl -s "http://127.0.0.1:$vault_port/v1/audit?action=request.received&decision=allowed" \
  -H "authorization: Bearer $token" |
  jq -r '[.events[].reasons.client_addr_hmac] | unique | length')
expect "2" "$sources" "distinct client addresses recorded for the accepted filings"
echo "nginx: ok"
