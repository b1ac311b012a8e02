#!/usr/bin/env bash
# Runs the documentation's shell walkthroughs as written, in order, against
# a fresh vault, and checks the outputs they show: README.md,
# docs/REQUESTS.md, docs/ERASURE.md and docs/AUDITORS.md.
#
# The one extraction rule: a fenced block that opens with "```sh run" (the
# fence may be indented, e.g. inside a list; the indentation is removed) is
# run; "```sh run-postgres" blocks (the README's PostgreSQL section) are run
# in a second pass against the local PostgreSQL. Other blocks ("```json",
# "```toml", "```text", …) are only shown; a shell block ("```sh", "```bash",
# "```shell", "```console") that is not run is an error: what a reader may
# copy into a shell runs here. Each file's run blocks run in order in one
# bash (set -euo pipefail), so a block uses the variables and files of the
# blocks before it, in a fresh directory against a fresh vault on
# 127.0.0.1:8080 (started here, as the reader starts it; `pii-vault` is on
# PATH and at target/release/pii-vault, the shipped policy in ./policies).
#
# The check: inside a run block, a comment line that holds a JSON object
# ("# {…}", possibly continued on the following comment lines) shows an
# answer, and so does a "```json" block that directly follows the run block. Some JSON object the block printed must have those fields with
# those values: "…" inside a string matches any text (and in such a string a
# digit or a letter a-f stands for any hex digit: example ids and times),
# a bare … stands for fields or items left out, an array matches when each shown item matches
# one printed item. Other comments are prose.
#
# Usage: .ci/docs.sh [BINARY]   (default: target/debug/pii-vault, built)
# Needs jq, curl, python3 and, for the second pass, PostgreSQL's client tools
# and a server on 127.0.0.1:5432 that trusts the postgres user.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

# check EXPECT OUTPUT LABEL: every shown answer matches a printed object.
check() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
expect_file, output_file, label = sys.argv[1:]
ELL = '\u2026'

def parse_shown(text):
    # Drop bare … (with a neighbouring comma) outside strings.
    out, i, in_str = [], 0, False
    while i < len(text):
        ch = text[i]
        if in_str:
            out.append(ch)
            if ch == '\\':
                out.append(text[i + 1]); i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True; out.append(ch)
        elif ch == ELL:
            while out and out[-1] in ' ,':
                if out.pop() == ',':
                    break
        else:
            out.append(ch)
        i += 1
    cleaned = re.sub(r'([\[{])\s*,', r'\1', ''.join(out))
    return json.loads(cleaned)

def matches(shown, got):
    if isinstance(shown, dict):
        return isinstance(got, dict) and all(k in got and matches(v, got[k]) for k, v in shown.items())
    if isinstance(shown, list):
        return isinstance(got, list) and all(any(matches(s, g) for g in got) for s in shown)
    if isinstance(shown, str) and ELL in shown:
        def loose(piece):
            # Example ids and times: a digit or a-f stands for any hex digit.
            return ''.join('[0-9a-f]' if c in '0123456789abcdef' else re.escape(c) for c in piece)
        pattern = '.*'.join(loose(p) for p in shown.split(ELL))
        return isinstance(got, str) and re.fullmatch(pattern, got, re.S) is not None
    return shown == got

# Every JSON object in the output, wherever it starts.
printed, text, i = [], open(output_file, encoding='utf-8', errors='replace').read(), 0
decoder = json.JSONDecoder()
while True:
    i = text.find('{', i)
    if i < 0:
        break
    try:
        value, end = decoder.raw_decode(text, i)
        printed.append(value)
        i = end
    except ValueError:
        i += 1
failed = 0
for text in open(expect_file, encoding='utf-8'):
    text = text.strip()
    if not text:
        continue
    try:
        shown = parse_shown(text)
    except ValueError as e:
        print(f'{label}: the shown answer is not JSON ({e}): {text}'); failed += 1; continue
    if not any(matches(shown, got) for got in printed):
        print(f'{label}: no printed answer matches the one shown:\n  shown:   {text}')
        for got in printed:
            print('  printed: ' + json.dumps(got, ensure_ascii=False)[:400])
        failed += 1
sys.exit(1 if failed else 0)
PY
}

if [ "${1:-}" = "--check" ]; then
  check "$2" "$3" "$4"
  exit
fi
cd "$repo"

for tool in jq curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq curl python3 >/dev/null
  fi
done

bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet
  bin="$repo/target/debug/pii-vault"
fi
bin=$(realpath "$bin")
files=(README.md docs/REQUESTS.md docs/ERASURE.md docs/AUDITORS.md)

work=$(mktemp -d /tmp/pii-vault-docs.XXXXXX)
cleanup() {
  [ -f "$work/serve.pid" ] && kill "$(cat "$work/serve.pid")" 2>/dev/null || true
  if [ -n "${pg_created:-}" ]; then
    for db in vault vault_tombstones; do
      psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres || true
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# extract TAG OUT_DIR: one script per run block (N.sh) and its shown
# answers (N.expect, one JSON text per line), plus list (file:line per N).
extract() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
tag, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
fence = re.compile(r'^(\s*)```(.*)$')
n = 0
listing = []
for f in files:
    lines = open(f, encoding='utf-8').read().split('\n')
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m or m.group(2).strip() != 'sh ' + tag:
            i += 1
            continue
        indent, start, body = len(m.group(1)), i + 1, []
        i += 1
        while i < len(lines) and not fence.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == '' else lines[i])
            i += 1
        i += 1
        n += 1
        expects, pending = [], None
        for line in body:
            c = re.match(r'^\s*(?:[^#]*\s)?#\s?(.*)$', line)
            text = c.group(1).strip() if c else None
            if pending is not None:
                if c and re.match(r'^\s*#', line):
                    pending += text
                    if pending.count('{') <= pending.count('}'):
                        expects.append(pending); pending = None
                    continue
                expects.append(pending); pending = None
            if text and text.startswith('{'):
                if text.count('{') <= text.count('}'):
                    expects.append(text)
                else:
                    pending = text
        if pending is not None:
            expects.append(pending)
        # A ```json block right after the run block shows its answer.
        if i < len(lines):
            m2 = fence.match(lines[i])
            if m2 and m2.group(2).strip() == 'json':
                j, shown = i + 1, []
                while j < len(lines) and not fence.match(lines[j]):
                    shown.append(lines[j].strip())
                    j += 1
                expects.append(' '.join(shown))
        open(f'{out}/{n}.sh', 'w').write('\n'.join(body) + '\n')
        open(f'{out}/{n}.expect', 'w').write('\n'.join(expects) + ('\n' if expects else ''))
        listing.append(f'{f}:{start}')
open(f'{out}/list', 'w').write('\n'.join(listing) + ('\n' if listing else ''))
PY
}

# count_blocks TAG FILE: how many blocks of TAG FILE has.
count_blocks() {
  grep -cE '^\s*```sh '"$1"'\s*$' "$2" || true
}

# unrun_shell_blocks FILE...: file:line of each shell block that is not run.
unrun_shell_blocks() {
  python3 - "$@" <<'PY'
import re, sys
fence = re.compile(r'^\s*```(.*)$')
for f in sys.argv[1:]:
    inside = False
    for n, line in enumerate(open(f, encoding='utf-8'), 1):
        m = fence.match(line)
        if not m:
            continue
        if inside:
            inside = False
            continue
        inside = True
        info = m.group(1).split()
        if info and info[0] in ('sh', 'bash', 'shell', 'console', 'zsh') \
                and info[1:] not in (['run'], ['run-postgres']):
            print(f'{f}:{n}: ```{m.group(1).strip()}')
PY
}

# run_blocks TAG DIR FILE: runs every block of TAG in FILE in DIR, in one bash.
run_blocks() {
  local tag=$1 dir=$2 file=$3
  local blocks
  blocks="$work/blocks-$tag-$(basename "$file" .md)"
  mkdir -p "$blocks"
  extract "$tag" "$blocks" "$file"
  local count
  count=$(grep -c . "$blocks/list" || true)
  [ "$count" -gt 0 ] || { echo "no \`\`\`sh $tag blocks in $file" >&2; exit 1; }
  {
    echo 'set -euo pipefail'
    for n in $(seq 1 "$count"); do
      local where
      where=$(sed -n "${n}p" "$blocks/list")
      echo "echo '--- $where'"
      echo "{"
      cat "$blocks/$n.sh"
      echo "} >'$blocks/$n.out'"
      echo "cat '$blocks/$n.out'"
      echo "bash '$repo/.ci/docs.sh' --check '$blocks/$n.expect' '$blocks/$n.out' '$where'"
    done
  } >"$blocks/all.sh"
  # Whatever a block left running in the background (a `serve &`) stops
  # with the walkthrough.
  (cd "$dir" && bash -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT; source '$blocks/all.sh'")
  echo "ran $count \`\`\`sh $tag block(s) of $file"
}

step() { printf '\n--> %s\n' "$*"; }

# The reader's directory: the binary where the docs say, the shipped policy.
prepare() {
  mkdir -p "$1/target/release" "$work/bin"
  ln -s "$bin" "$1/target/release/pii-vault"
  ln -sf "$bin" "$work/bin/pii-vault"
  ln -s "$repo/policies" "$1/policies"
}
export PATH="$work/bin:$PATH"
# The walkthroughs run with the default settings.
while read -r name; do unset "$name"; done < <(env | sed -n 's/^\(PII_VAULT_[A-Z_]*\)=.*/\1/p')

unrun=$(unrun_shell_blocks "${files[@]}")
if [ -n "$unrun" ]; then
  printf 'shell blocks that are not run (tag them "sh run", or show them as "text"):\n%s\n' "$unrun" >&2
  exit 1
fi

ran=0
for file in "${files[@]}"; do
  [ "$(count_blocks run "$file")" -gt 0 ] || { echo "$file has no \`\`\`sh run block" >&2; exit 1; }
  step "$file: its walkthroughs on a fresh SQLite vault"
  if curl -s -o /dev/null http://127.0.0.1:8080/healthz; then
    echo "something already listens on 127.0.0.1:8080, where the walkthroughs expect the vault" >&2
    exit 1
  fi
  dir="$work/$(basename "$file" .md)"
  prepare "$dir"
  (cd "$dir" && exec target/release/pii-vault serve >"$work/serve.log" 2>&1) &
  echo $! >"$work/serve.pid"
  for _ in $(seq 1 60); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 1; done
  curl -sf http://127.0.0.1:8080/healthz >/dev/null || { cat "$work/serve.log"; exit 1; }
  run_blocks run "$dir" "$file"
  kill "$(cat "$work/serve.pid")" && rm -f "$work/serve.pid"
  wait 2>/dev/null || true
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "no \`\`\`sh run blocks found" >&2; exit 1; }

step "the PostgreSQL section (README.md), against the local PostgreSQL"
for db in vault vault_tombstones; do
  if psql -h 127.0.0.1 -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
    echo "a database named $db exists already; the PostgreSQL walkthrough creates its own" >&2
    exit 1
  fi
done
pg_created=1
prepare "$work/pg"
run_blocks run-postgres "$work/pg" README.md
echo "docs: ok"
