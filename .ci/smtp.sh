#!/usr/bin/env bash
# SMTP delivery of the outbox against a real SMTP server on loopback:
# aiosmtpd (from PyPI, in a venv under target/) started by the tests
# themselves. They are #[ignore]d in a plain `cargo test` (a fresh machine
# has no aiosmtpd); here they run on SQLite and, with DATABASE_URL, on
# PostgreSQL too.
#
#   .ci/smtp.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .ci/smtp.sh
set -euo pipefail
cd "$(dirname "$0")/.."

AIOSMTPD_VERSION=${AIOSMTPD_VERSION:-1.4.6}
VENV=target/aiosmtpd-venv
PY=$(command -v python3.11 || command -v python3)

if ! "$VENV/bin/python3" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
# The tests run `python3 -m aiosmtpd`: the venv's python3 comes first.
export PATH="$PWD/$VENV/bin:$PATH"
python3 -m aiosmtpd --version

cargo test --locked --test api -- --ignored smtp::
