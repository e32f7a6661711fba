#!/usr/bin/env bash
# usage: scripts/switch-queue.sh memory|nats|kafka
#        scripts/switch-queue.sh memory|nats|kafka --naive   (the old path: recreate the processor)
#
# Run the stack on the given queue. Starts the stack when nothing runs yet
# (the spec's "Start with Memory Queue": this or make docker-up); the broker
# (NATS, or Kafka) is started first for `nats` or `kafka` (a memory stack needs
# neither). Then waits until everything is healthy and prints the processor's /stats.
#
# A running stack on another queue is switched without downtime (planned,
# the default): `processor-next` starts on the new queue beside `processor`,
# ingest forwards to it (PUT /admin/processors), `processor` drains (POST
# /admin/drain: publishes that still reach it get 503 + X-Processor-Draining
# and ingest retries them, same ids, on processor-next; its workers finish
# everything it holds) and is recreated on the new queue once drained; then
# the same hop back: ingest to `processor`, processor-next drained (on a
# broker: idle, as both read one consumer / consumer group) and removed.
# Clients see 202s throughout and nothing acknowledged is lost.
#
# --naive (the old path): recreate the processor with the new QUEUE_TYPE.
# What the memory queue still holds is dropped, and clients get 503s while
# no processor answers; a broker's backlog stays there, unread by a
# memory processor. Kept to compare (notebooks/07_migration).
#
# The closed stack publishes only the gateway: every call to ingest and the
# processors (/admin/*, /stats) goes through `docker exec` (service_call in
# scripts/compose.sh), with the ADMIN_TOKEN the containers were started with.
# Images are built first when missing (docker/build-images.sh).
#
# Environment: as scripts/compose.sh (COMPOSE, COMPOSE_EXPOSE,
# COMPOSE_HOST_NETWORK, COMPOSE_PROJECT_NAME, *_PORT, NATS_NODES=3 for the
# three-node cluster, ADMIN_TOKEN, API_KEY, NATS_PASSWORD), SWITCH_TIMEOUT (s,
# default 120: for each health wait and each drain; Kafka's first start takes
# longer: KAFKA_TIMEOUT, default 180).
set -euo pipefail
QL_SCRIPT=switch-queue
queue=${1:-}
mode=planned
case "${2:-}" in
  "") ;;
  --naive) mode=naive ;;
  *) queue="" ;;
esac
case "$queue" in
  memory | nats | kafka) ;;
  *)
    echo "usage: $0 memory|nats|kafka" >&2
    echo "       $0 memory|nats|kafka --naive   (recreate the processor: drops a memory backlog, 503s meanwhile)" >&2
    exit 2
    ;;
esac
export QUEUE_TYPE=$queue
# shellcheck source=scripts/compose.sh
. "$(dirname "$0")/compose.sh"
compose_init
ensure_images
timeout=${SWITCH_TIMEOUT:-120}

if [ "$(host_network)" = 1 ]; then
  processor_internal=http://127.0.0.1:${PROCESSOR_PORT:-8082}
  next_internal=http://127.0.0.1:${PROCESSOR_NEXT_PORT:-8083}
else
  processor_internal=http://processor:8082
  next_internal=http://processor-next:8082
fi

# admin SERVICE METHOD PATH [BODY]: an /admin/* call inside SERVICE's container (its
# ADMIN_TOKEN); the body of a 2xx, else the status and body on stderr and a failure.
admin() { service_call "$@"; }

# route URL: ingest forwards to this processor from now on.
route() {
  admin ingest PUT /admin/processors "{\"urls\": [\"$1\"]}" >/dev/null ||
    ql_die "ingest did not take the new processor list"
  ql_say "ingest now forwards to $1"
}

# drain SERVICE KEY: tell the processor SERVICE to drain; wait until its status has KEY true
# (drained: nothing left for it; idle: nothing in its hands, when the next one shares its consumer).
drain() {
  local service=$1 key=$2 deadline status
  status=$(admin "$service" POST /admin/drain) || ql_die "$service refused to drain"
  ql_say "$service draining: $(jq -c '{queued, in_flight}' <<<"$status")"
  deadline=$((SECONDS + timeout))
  until [ "$(jq -r ".$key" <<<"$status")" = true ]; do
    [ $SECONDS -lt "$deadline" ] || ql_die "$service not drained within ${timeout}s: $status (it keeps running; nothing is dropped)"
    sleep 0.2
    status=$(admin "$service" GET /admin/drain) || ql_die "$service: drain status unavailable"
  done
  ql_say "$service drained: processed $(jq -r .processed_count <<<"$status")"
}

was=$(env_of processor QUEUE_TYPE)
if [ "$mode" = planned ] && { [ -z "$was" ] || [ "$was" = "$queue" ] || [ "$(health_of processor)" != healthy ] || [ "$(health_of ingest)" != healthy ]; }; then
  mode=start # nothing to switch from without downtime: start (or keep) the stack on $queue
fi
if [ "$mode" = planned ] && [ "$(env_of ingest ADMIN_TOKEN)" != "$ADMIN_TOKEN" ]; then
  ql_die "the running ingest has no (or another) ADMIN_TOKEN: it was started before planned switches or with another token; use --naive, or make docker-down && make docker-up"
fi
ql_say "${was:-nothing} -> $queue, $mode (${COMPOSE_CMD[*]} $COMPOSE_VERSION, ${COMPOSE_FILE_ARGS//"$QL_ROOT"\//}, project $COMPOSE_PROJECT_NAME)"
services=(processor)
case "$queue" in
  nats) read -r -a brokers <<<"$(nats_services)" ;;
  kafka) brokers=(kafka) ;;
  memory) brokers=() ;;
esac
if [ "${#brokers[@]}" -gt 0 ]; then
  compose up -d "${brokers[@]}"
  broker_timeout=$timeout
  [ "$queue" != kafka ] || broker_timeout=${KAFKA_TIMEOUT:-180}
  wait_healthy "$broker_timeout" "${brokers[@]}"
  services=("${brokers[@]}" processor)
fi

if [ "$mode" = planned ]; then
  # 1. processor-next on the new queue, beside the old processor; ingest forwards to it
  NEXT_QUEUE_TYPE=$queue compose --profile switch up -d --no-deps processor-next
  wait_healthy "$timeout" processor-next
  route "$next_internal"
  # 2. the old processor finishes what it holds, then is recreated on the new queue
  drain processor drained
fi
# Only the processor reads QUEUE_TYPE: compose recreates it (its environment
# changed) and leaves the others running; --no-deps keeps it from touching them.
compose up -d --no-deps processor
wait_healthy "$timeout" processor
if [ "$mode" = planned ]; then
  # 3. the hop back: ingest to the processor on the spec's port, processor-next drained and removed
  route "$processor_internal"
  if [ "$queue" = memory ]; then drain processor-next drained; else drain processor-next idle; fi
  compose --profile switch stop processor-next >/dev/null
  compose --profile switch rm -f processor-next >/dev/null
fi
compose up -d ingest api-gateway
wait_healthy "$timeout" "${services[@]}" ingest api-gateway
write_root_env

stats=$(service_call processor GET /stats) || ql_die "the processor's /stats does not answer"
type=$(jq -r '.queue.type // empty' <<<"$stats")
[ "$type" = "$queue" ] || ql_die "the processor reports queue type '${type:-?}', expected '$queue'"
ql_say "processor on $queue; its /stats:"
jq -c '{queue: .queue | {type, total_enqueued, total_dequeued, current_size}, pool: .pool | {processed_count, error_count, total_duration}}' <<<"$stats"
if [ "$queue" = nats ] && [ "${NATS_NODES:-1}" = 3 ]; then
  jq -c '.queue.cluster // "no cluster block in /stats" | {leader, meta_leader, replicas}' <<<"$stats"
fi
