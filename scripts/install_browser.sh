#!/usr/bin/env bash
# Install Debian's chromium for the demo page's browser test (tests/test_serve_browser.py),
# if it is missing. Playwright drives it through executable_path=/usr/bin/chromium; it never
# downloads its own browsers (no `playwright install`). Needs root (or sudo) and apt.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install chromium with your package manager (the browser test is" \
       "skipped without /usr/bin/chromium)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "run as root (or install sudo) to apt-get install chromium" >&2; exit 1; fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
/usr/bin/chromium --version
