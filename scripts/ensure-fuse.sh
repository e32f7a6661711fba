#!/usr/bin/env bash
# FUSE for the lazy file system (power-loss experiments and tests):
# Debian's fuse3 (fusermount3) and libfuse3-3 (the library mfusepy loads),
# and the /dev/fuse device. Idempotent: quick when both are there.
# Called by scripts/test.sh in CI and by scripts/main.sh.
set -euo pipefail

# The library check reads ldconfig's cache into a variable first: `ldconfig -p | grep -q` under pipefail
# fails when grep exits at its match and ldconfig dies of SIGPIPE (it did, with libfuse3 installed).
has_libfuse3() { local cache; cache=$(ldconfig -p 2>/dev/null || true); grep -q 'libfuse3\.so' <<<"$cache"; }
need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
has_libfuse3 || need+=(libfuse3-3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-fuse: missing Debian package(s) ${need[*]}; install them: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "ensure-fuse: installing ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -c /dev/fuse ]; then
  echo "ensure-fuse: no /dev/fuse character device: load the module (modprobe fuse) or give the container --device /dev/fuse --cap-add SYS_ADMIN" >&2
  exit 1
fi
command -v fusermount3 >/dev/null 2>&1 || { echo "ensure-fuse: fusermount3 still missing after installing fuse3" >&2; exit 1; }
has_libfuse3 || { echo "ensure-fuse: libfuse3.so still missing after installing libfuse3-3" >&2; exit 1; }
