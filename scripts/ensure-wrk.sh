#!/usr/bin/env bash
# Make sure `wrk` (the HTTP benchmarking tool, Debian package `wrk`) is on PATH:
# `diplom bench-services` drives the gateway with it beside our own load
# generator, as an independent check of the generator's figure.
#
# Idempotent: a no-op when wrk is installed. As root with apt-get, installs
# Debian's wrk (apt-get update only when the first try fails). Exits non-zero
# with the reason when it cannot.
set -euo pipefail

say() { echo "ensure-wrk: $*" >&2; }

if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "FAILED: wrk is not installed and this is not root with apt-get: install Debian's wrk (apt-get install wrk)"
  exit 1
fi
say "installing Debian's wrk (apt-get install -y wrk)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1; then
  apt-get update -qq >/dev/null || { say "FAILED: apt-get update"; exit 1; }
  apt-get install -y -qq --no-install-recommends wrk >/dev/null || { say "FAILED: apt-get install wrk"; exit 1; }
fi
command -v wrk >/dev/null 2>&1 || { say "FAILED: wrk still not on PATH after installing"; exit 1; }
