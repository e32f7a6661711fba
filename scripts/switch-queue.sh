#!/usr/bin/env bash
# usage: scripts/switch-queue.sh memory|nats
#
# Run the stack on the given queue: recreate the processor with the new
# QUEUE_TYPE (NATS is started first for `nats`; a memory stack does not need
# it), start ingest and api-gateway if they are not running, wait until all
# of them are healthy, print the processor's /stats. Starts the stack when
# nothing runs yet (the spec's "Start with Memory Queue": this or make docker-up).
#
# Switching away from memory drops what the memory queue still holds (that
# is what the memory queue is); NATS keeps its stream across switches.
# Images are built first when missing (docker/build-images.sh).
#
# Environment: as scripts/compose.sh (COMPOSE, COMPOSE_HOST_NETWORK,
# COMPOSE_PROJECT_NAME, *_PORT, NATS_NODES=3 for the three-node cluster),
# SWITCH_TIMEOUT (s, default 120).
set -euo pipefail
QL_SCRIPT=switch-queue
queue=${1:-}
case "$queue" in
  memory | nats) ;;
  *)
    echo "usage: $0 memory|nats" >&2
    exit 2
    ;;
esac
export QUEUE_TYPE=$queue
# shellcheck source=scripts/compose.sh
. "$(dirname "$0")/compose.sh"
compose_init
ensure_images
timeout=${SWITCH_TIMEOUT:-120}

was=$(env_of processor QUEUE_TYPE)
ql_say "${was:-nothing} -> $queue (${COMPOSE_CMD[*]} $COMPOSE_VERSION, ${COMPOSE_FILE_PATH#"$QL_ROOT"/}, project $COMPOSE_PROJECT_NAME)"
services=(processor)
if [ "$queue" = nats ]; then
  read -r -a nats_nodes <<<"$(nats_services)"
  compose up -d "${nats_nodes[@]}"
  wait_healthy "$timeout" "${nats_nodes[@]}"
  services=("${nats_nodes[@]}" processor)
fi
# Only the processor reads QUEUE_TYPE: compose recreates it (its environment
# changed) and leaves the others running; --no-deps keeps it from touching them.
compose up -d --no-deps processor
wait_healthy "$timeout" processor
compose up -d ingest api-gateway
wait_healthy "$timeout" "${services[@]}" ingest api-gateway
write_root_env

stats=$(http_json GET "$PROCESSOR_URL_HOST/stats") || ql_die "the processor's /stats does not answer"
type=$(jq -r '.queue.type // empty' <<<"$stats")
[ "$type" = "$queue" ] || ql_die "the processor reports queue type '${type:-?}', expected '$queue'"
ql_say "processor on $queue; $PROCESSOR_URL_HOST/stats:"
jq -c '{queue: .queue | {type, total_enqueued, total_dequeued, current_size}, pool: .pool | {processed_count, error_count, total_duration}}' <<<"$stats"
if [ "$queue" = nats ] && [ "${NATS_NODES:-1}" = 3 ]; then
  jq -c '.queue.cluster // "no cluster block in /stats" | {leader, meta_leader, replicas}' <<<"$stats"
fi
