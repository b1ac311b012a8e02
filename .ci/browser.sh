#!/usr/bin/env bash
# The HTML pages in a real browser: Debian's chromium driven by its
# chromedriver over WebDriver (tests/api/browser.rs). The tests are
# #[ignore]d in a plain `cargo test`; here they run on SQLite and, with
# DATABASE_URL, on PostgreSQL too. Screenshots land in target/screenshots/.
#
#   .ci/browser.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .ci/browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in chromium chromium-driver fonts-noto-cjk; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
chromium --version
chromedriver --version

echo "browser tests on SQLite"
env -u DATABASE_URL cargo test --locked --test api -- --ignored browser::
if [ -n "${DATABASE_URL:-}" ]; then
  echo "browser tests on SQLite and PostgreSQL"
  cargo test --locked --test api -- --ignored browser::
fi
ls target/screenshots/
