#!/usr/bin/env bash
# The Kafka image's base, with no registry: a minimal Debian bookworm with
# Debian's openjdk-17-jre-headless, made by debootstrap from Debian's packages
# and imported with `docker import` as queue-lab/java-base:bookworm.
# Idempotent: quick when the engine has the image (--force rebuilds it).
# Called by experiments/runtime/kafka/docker.py (ensure_kafka_image) when the
# base is missing; prints how long it took.
# Environment: DEBIAN_MIRROR (http://deb.debian.org/debian), JAVA_BASE_IMAGE.
set -euo pipefail
IMAGE=${JAVA_BASE_IMAGE:-queue-lab/java-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { echo "kafka base: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}
[ "${1:-}" = --force ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1 || exit 0
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (bash scripts/ensure-docker.sh starts one here)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || {
  command -v apt-get >/dev/null 2>&1 || die "need debootstrap (apt-get install debootstrap)"
  say "installing Debian's debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
    die "apt-get install debootstrap failed"
}
t0=$SECONDS
root=$(mktemp -d /var/tmp/queue-lab-java-rootfs.XXXXXX)
# shellcheck disable=SC2064  # expand now: the path is fixed
trap "rm -rf '$root' '$root.log'" EXIT
say "debootstrap --variant=minbase bookworm with openjdk-17-jre-headless from $DEBIAN_MIRROR"
debootstrap --variant=minbase --include=openjdk-17-jre-headless bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2
  die "debootstrap failed"
}
# What a container never needs: apt's caches and lists, docs, man pages, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["java", "-version"]' \
  - "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" java -version >&2 || die "the imported base $IMAGE cannot run java"
say "$IMAGE built in $((SECONDS - t0))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
