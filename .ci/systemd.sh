#!/usr/bin/env bash
# `systemd-analyze verify` on deploy/pii-vault.service.
#
# verify checks that ExecStart's binary exists, so a copy of the unit is
# verified with ExecStart pointing at the built binary; the unit's other
# paths (the credential, the config file) are only read when it starts.
# Works in a container without a running systemd.
#
# Usage: .ci/systemd.sh [BINARY]   (default: target/debug/pii-vault, built)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet
  bin="$repo/target/debug/pii-vault"
fi
bin=$(realpath "$bin")

work=$(mktemp -d /tmp/pii-vault-systemd.XXXXXX)
trap 'rm -rf "$work"' EXIT
grep -q '^ExecStart=/usr/local/bin/pii-vault ' deploy/pii-vault.service
sed "s#^ExecStart=/usr/local/bin/pii-vault #ExecStart=$bin #" deploy/pii-vault.service \
  >"$work/pii-vault.service"
# Every warning fails the step: verify prints them on stderr.
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$work/pii-vault.service" 2>&1 || echo "exit status $?")
if [ -n "$out" ]; then
  echo "$out" >&2
  exit 1
fi
# The hardening the deployment guide promises.
for setting in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes \
  ReadWritePaths=/var/lib/pii-vault LoadCredential=root.key:; do
  grep -q "^$setting" deploy/pii-vault.service || { echo "missing: $setting" >&2; exit 1; }
done
echo "systemd-analyze verify deploy/pii-vault.service: ok"
