#!/usr/bin/env bash
# Installs what the real-browser UI test needs: Debian's chromium and
# playwright-core (exact version from package-lock.json). Idempotent; CI
# (.ci/run) calls it before `make test`.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi

# npm ci installs exactly the lock file; skip it when that is already done.
locked=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
installed=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$locked" != "$installed" ]; then
	npm ci --no-audit --no-fund --silent
fi
echo "ui-test: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
