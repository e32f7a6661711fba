#!/usr/bin/env bash
# `make docker-up`: build the images (cached layers: seconds when nothing
# changed; offline when no registry answers), start the whole stack (NATS,
# processor, ingest, api-gateway) with QUEUE_TYPE (default: the running
# processor's, else memory), wait until every container is healthy, print
# where things are. The compose file and command are chosen by
# scripts/compose.sh (host networking when the engine has no bridge).
#
# Environment: QUEUE_TYPE, COMPOSE_HOST_NETWORK, COMPOSE, COMPOSE_PROJECT_NAME,
# the *_PORT variables, UP_TIMEOUT (s, default 120), SKIP_BUILD=1 (use the
# images as they are).
set -euo pipefail
QL_SCRIPT=docker-up
# shellcheck source=scripts/compose.sh
. "$(dirname "$0")/compose.sh"
compose_init

if [ "${SKIP_BUILD:-0}" = 1 ]; then ensure_images; else bash "$QL_ROOT/docker/build-images.sh"; fi
ql_say "${COMPOSE_CMD[*]} ($COMPOSE_VERSION), ${COMPOSE_FILE_ARGS//"$QL_ROOT"\//}, project $COMPOSE_PROJECT_NAME, QUEUE_TYPE=$QUEUE_TYPE"
compose up -d --remove-orphans
wait_healthy "${UP_TIMEOUT:-120}" nats processor ingest api-gateway
write_root_env
ql_say "up: gateway $GATEWAY_URL (POST /api/v1/ingest with X-API-Key: the key in docker/.api-key, or API_KEY; GET /api/v1/status)"
ql_say "the processor's /stats: bash scripts/compose.sh exec processor python /app/serve.py --request GET /stats (COMPOSE_EXPOSE=1 publishes the other services on 127.0.0.1)"
compose ps
