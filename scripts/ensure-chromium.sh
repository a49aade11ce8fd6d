#!/usr/bin/env bash
# Installs headless Chromium from Debian's `chromium` package when missing: the dashboard's
# browser tests (integration/dashboard_test.go) drive it through chromedp.
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
  command -v "$b" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" -ne 0 ]; then
  echo "the dashboard's browser tests need chromium and cannot install it without root." >&2
  echo "Run: sudo apt-get update && sudo apt-get install -y chromium   (or run make as root)" >&2
  echo "Without it those tests skip, saying so." >&2
  exit 0
fi
echo "installing chromium from Debian's packages (the dashboard's browser tests)..."
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
  echo "could not install chromium: the dashboard's browser tests will skip, saying so." >&2
fi
