#!/usr/bin/env bash
# The real `nats` CLI (github.com/nats-io/natscli), pinned, built with
# `go install` from the Go module proxy into a cache outside the repo:
#   ${QUEUE_LAB_NATSCLI_HOME:-$HOME/.cache/queue-lab/natscli-<version>}/nats
# A static binary (CGO_ENABLED=0), so the FROM-scratch NATS image can carry it
# (docker/build-images.sh): `docker exec <nats> nats stream ls` is the real
# thing. Idempotent: quick when the binary is there. Prints its path on stdout.
# Needs Go (installed from Debian's golang-go when root and missing).
set -euo pipefail
NATSCLI_VERSION=v0.5.1
say() { echo "ensure-natscli: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}
home=${QUEUE_LAB_NATSCLI_HOME:-$HOME/.cache/queue-lab/natscli-$NATSCLI_VERSION}
bin=$home/nats
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "the nats CLI is built with Go; install it: sudo apt-get install golang-go"
  fi
  say "installing Debian's golang-go"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null ||
    die "apt-get install golang-go failed"
fi
mkdir -p "$home"
exec 9>"$home/.lock"
flock 9
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
t0=$SECONDS
say "go install github.com/nats-io/natscli/nats@$NATSCLI_VERSION (static) into $home"
CGO_ENABLED=0 GOBIN=$home GOFLAGS=-buildvcs=false go install -trimpath -ldflags='-s -w' \
  "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" >"$home/build.log" 2>&1 || {
  tail -n 30 "$home/build.log" >&2
  die "go install failed (log: $home/build.log); the Go module proxy must be reachable"
}
say "nats CLI $("$bin" --version 2>&1) built in $((SECONDS - t0))s"
echo "$bin"
