#!/usr/bin/env bash
# Installs what the e2e tier needs besides a ComfyUI checkout and its venv:
#   - Debian's Chromium and ChromeDriver (apt-get; no browser download by any npm package)
#   - a CJK font (fonts-wqy-microhei): the Wan templates' negative prompt is Chinese; without it the
#     screenshots and thumbnails show empty boxes
#   - playwright-core for the Node.js bridge (npm ci from tests/e2e/driver/package-lock.json)
# Idempotent; run as root (or with sudo available). Usage: tests/e2e/setup.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -d /usr/share/fonts/truetype/wqy ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
else
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-wqy-microhei
fi

command -v node >/dev/null || { echo "setup.sh: Node.js (node, npm) is required; install it first (e.g. apt-get install nodejs npm)" >&2; exit 1; }
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing anyway; belt and braces.
(cd "$here/driver" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
echo "e2e tier ready: node $(node --version), playwright-core $(node -p "require('$here/driver/node_modules/playwright-core/package.json').version")"
