#!/usr/bin/env bash
# Debian's Chromium for the browser test of `make lab` (tests/test_lab_browser.py):
# packages chromium and chromium-driver (/usr/bin/chromium). Playwright drives it
# through its executable path; no browser is downloaded. Idempotent: quick when there.
# Called by scripts/test.sh in CI (where the browser test must run, not skip).
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no chromium; install it: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  echo "ensure-chromium: installing chromium chromium-driver" >&2
  # a shared lock: another script may be running apt-get at the same time
  exec 9>/var/lock/queue-lab-ensure-apt.lock
  flock -w 600 9
  command -v chromium >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  }
fi
command -v chromium >/dev/null 2>&1 || { echo "ensure-chromium: chromium still missing after the install" >&2; exit 1; }
chromium --version >&2
