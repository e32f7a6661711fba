#!/usr/bin/env bash
# Test both queue implementations on the docker stack (the spec's
# "./scripts/test-nats-integration.sh"). Exits non-zero, saying what failed,
# on any failure; bounded by INTEGRATION_TIMEOUT (default 600 s).
#
#  1. memory: `switch-queue.sh memory` (starts the stack if none runs; a fresh
#     memory stack runs without NATS), /api/v1/status ok, post messages
#     through the gateway, wait until processed, check /stats.
#  2. kafka: `switch-queue.sh kafka` (starts the Kafka broker), the same
#     (INTEGRATION_KAFKA=0 leaves it out).
#  3. nats: `switch-queue.sh nats`, the same.
#  4. durability: post a backlog (PROCESSING_MS slows the processor so that
#     it is still queued), restart the nats container while the backlog is
#     there, post more once it is back, and check BY ID in the processor's
#     ledger that every acknowledged (202) message was processed.
#
# Message ids are the client's (unique per run), so a post retried after a
# 503 is stored once; an id counts as acknowledged only after a 202.
#
# Cleanup: a stack this script started is removed at the end (`down -v`:
# containers, network, volumes), pass or fail, unless KEEP_STACK=1. A stack
# that was already running is left running, switched back to the queue type
# and PROCESSING_MS it had.
#
# Environment: as scripts/compose.sh (COMPOSE, COMPOSE_HOST_NETWORK,
# COMPOSE_PROJECT_NAME, *_PORT, NATS_NODES=3: the three-node cluster, all
# three restarted in step 3, the stream leader checked in /stats), INTEGRATION_MESSAGES (per phase, 200),
# INTEGRATION_BACKLOG (1000), INTEGRATION_PROCESSING_MS (20),
# ACKED_IDS_FILE (write the acknowledged ids there, one a line), KEEP_STACK.
set -euo pipefail
# The whole run is bounded: under `timeout`, whose TERM runs the cleanup below.
if [ -z "${QL_UNDER_TIMEOUT:-}" ]; then
  QL_UNDER_TIMEOUT=1 exec timeout -k 120 "${INTEGRATION_TIMEOUT:-600}" bash "$0" "$@"
fi
QL_SCRIPT=test-nats-integration
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/compose.sh
. "$here/compose.sh"

N=${INTEGRATION_MESSAGES:-200}
BACKLOG=${INTEGRATION_BACKLOG:-1000}
WORK_MS=${INTEGRATION_PROCESSING_MS:-20}
RUN=it-$(date +%s)-$$
command -v jq >/dev/null 2>&1 || ql_die "needs jq (apt-get install jq)"
command -v curl >/dev/null 2>&1 || ql_die "needs curl (apt-get install curl)"

unset QUEUE_TYPE # compose_init reads the running processor's
compose_init
orig_queue=$(env_of processor QUEUE_TYPE)
orig_work_ms=$(env_of processor PROCESSING_MS)
started=0
[ -n "$(container_of processor)" ] || started=1
acked=${ACKED_IDS_FILE:-$(mktemp)}
: >"$acked"
errf=$(mktemp)
t_start=$SECONDS

step() { ql_say "== $* (t=$((SECONDS - t_start))s)"; }
fail() { ql_die "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$started" = 1 ]; then
    if [ "${KEEP_STACK:-0}" = 1 ]; then
      ql_say "KEEP_STACK=1: the stack stays up (scripts/compose.sh down -v removes it)"
    else
      ql_say "removing the stack this script started (down -v)"
      compose down -v --remove-orphans >/dev/null 2>&1 || compose down -v --remove-orphans >&2 || rc=1
    fi
  elif [ -n "$orig_queue" ]; then
    ql_say "restoring the running stack to QUEUE_TYPE=$orig_queue"
    PROCESSING_MS=${orig_work_ms:-0} bash "$here/switch-queue.sh" "$orig_queue" >/dev/null || rc=1
  fi
  [ -n "${ACKED_IDS_FILE:-}" ] || rm -f "$acked"
  rm -f "$errf"
  if [ "$rc" = 0 ]; then ql_say "PASSED in $((SECONDS - t_start))s"; else ql_say "FAILED (exit $rc) after $((SECONDS - t_start))s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'ql_say "stopped: over INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-600}s or terminated"; exit 143' TERM
trap 'exit 130' INT

# --- helpers -------------------------------------------------------------------
stats() { service_call processor GET /stats; }  # the processor's port is not published
stat_of() { jq -r "$1" <<<"$(stats)"; }

# post FROM COUNT PHASE [BATCH]: COUNT messages through the gateway, ids
# RUN-PHASE-i, in batches of BATCH (50) after one single-message request (the
# spec's shape); a 503
# or 429 is retried with the same ids for up to 30 s. Ids answered 202 go to $acked.
post() {
  local from=$1 phase=$3 batch=${4:-50} i=$1 end=$(($1 + $2)) size body reply tries
  while [ "$i" -lt "$end" ]; do
    size=$((end - i < batch ? end - i : batch))
    if [ "$i" = "$from" ]; then
      size=1
      body=$(jq -nc --arg id "$RUN-$phase-$i" '{id: $id, source: "integration", payload: "hello nats"}')
    else
      body=$(jq -nc --arg p "$RUN-$phase-" --argjson a "$i" --argjson n "$size" \
        '[range($a; $a + $n) | {id: "\($p)\(.)", source: "integration", payload: {n: .}}]')
    fi
    tries=0
    until reply=$(http_json POST "$GATEWAY_URL/api/v1/ingest" "$body" 2>"$errf"); do
      tries=$((tries + 1))
      if ! grep -q -E 'HTTP (503|429|000)' "$errf" || [ "$tries" -ge 60 ]; then
        cat "$errf" >&2
        fail "POST /api/v1/ingest ($phase, ids from $i) failed"
      fi
      [ "$tries" -gt 1 ] || ql_say "retrying ($(cat "$errf"))"
      sleep 0.5
    done
    [ "$(jq -r '.ids | length' <<<"$reply")" = "$size" ] || fail "202 with $(jq -c .ids <<<"$reply") for $size messages"
    jq -r '.ids[]' <<<"$reply" >>"$acked"
    i=$((i + size))
  done
}

# processed_ids: the ids the processor's ledger has as processed.
processed_ids() {
  compose exec -T processor python -c '
import sqlite3
db = sqlite3.connect("file:/data/ledger.sqlite?mode=ro", uri=True)
for (i,) in db.execute("SELECT DISTINCT id FROM deliveries WHERE outcome = ?", ("processed",)):
    print(i)
'
}

# check_all_processed WAIT_S: every acknowledged id is in the ledger as processed.
check_all_processed() {
  local deadline=$((SECONDS + $1)) missing
  while :; do
    missing=$(comm -23 <(sort -u "$acked") <(processed_ids | sort -u) | wc -l)
    [ "$missing" = 0 ] && break
    if [ $SECONDS -ge "$deadline" ]; then
      ql_say "acknowledged but not processed after $1 s: $missing ids, e.g.:"
      comm -23 <(sort -u "$acked") <(processed_ids | sort -u) | head -n 5 >&2
      fail "$missing acknowledged messages were never processed"
    fi
    sleep 1
  done
  ql_say "all $(sort -u "$acked" | wc -l) acknowledged ids are in the ledger as processed"
}

# wait_drained WAIT_S: the queue is empty and nothing is in flight.
wait_drained() {
  local deadline=$((SECONDS + $1)) s
  while :; do
    s=$(stats) || s='{}'
    [ "$(jq -r '"\(.queue.current_size) \(.queue.in_flight // 0)"' <<<"$s")" = "0 0" ] && return 0
    [ $SECONDS -lt "$deadline" ] || fail "the queue did not drain within $1 s: $(jq -c .queue <<<"$s")"
    sleep 0.5
  done
}

# phase QUEUE: switch, check the status, post N, check /stats and the ledger.
phase() {
  local queue=$1 before_enq before_proc after_enq after_proc status
  step "$queue: switch-queue.sh $queue"
  PROCESSING_MS=$WORK_MS bash "$here/switch-queue.sh" "$queue" || fail "switch-queue.sh $queue"
  if [ "$queue" = memory ] && [ "$started" = 1 ]; then
    [ "$(health_of nats)" = absent ] || fail "a fresh memory stack started NATS"
    ql_say "memory stack runs without NATS"
  fi
  status=$(http_json GET "$GATEWAY_URL/api/v1/status") || fail "/api/v1/status is not ok"
  [ "$(jq -r '"\(.status) \(.components.backend.type)"' <<<"$status")" = "ok $queue" ] ||
    fail "/api/v1/status: $(jq -c . <<<"$status")"
  before_enq=$(stat_of .queue.total_enqueued)
  before_proc=$(stat_of .pool.processed_count)
  step "$queue: posting $N messages"
  post 0 "$N" "$queue"
  wait_drained 60
  after_enq=$(stat_of .queue.total_enqueued)
  after_proc=$(stat_of .pool.processed_count)
  [ $((after_enq - before_enq)) -eq "$N" ] || fail "$queue: /stats total_enqueued grew by $((after_enq - before_enq)), expected $N"
  [ $((after_proc - before_proc)) -ge "$N" ] || fail "$queue: /stats processed_count grew by $((after_proc - before_proc)), expected >= $N"
  ql_say "$queue /stats: $(stats | jq -c '{queue: .queue | {type, total_enqueued, total_dequeued, current_size}, pool: .pool | {processed_count, error_count}}')"
  check_all_processed 30
}

# --- the run ---------------------------------------------------------------------
ql_say "run $RUN: ${COMPOSE_CMD[*]} $COMPOSE_VERSION, ${COMPOSE_FILE_ARGS//"$QL_ROOT"\//}, project $COMPOSE_PROJECT_NAME, $([ "$started" = 1 ] && echo "starting a stack" || echo "stack already running (QUEUE_TYPE=$orig_queue)")"
phase memory
[ "${INTEGRATION_KAFKA:-1}" = 0 ] || phase kafka
phase nats

step "nats: restart of the nats container with a backlog"
post 0 "$BACKLOG" backlog 500
backlog_now=$(stat_of .queue.current_size)
[ "$backlog_now" -gt 0 ] || fail "no backlog to carry over the restart (current_size 0): raise INTEGRATION_BACKLOG or INTEGRATION_PROCESSING_MS"
read -r -a nats_nodes <<<"$(nats_services)"
ql_say "restarting ${nats_nodes[*]} with $backlog_now messages queued"
compose restart "${nats_nodes[@]}" >/dev/null 2>&1 || fail "compose restart ${nats_nodes[*]}"
wait_healthy 90 "${nats_nodes[@]}" processor || fail "${nats_nodes[*]} or the processor not healthy after the restart"
step "nats: posting $N messages after the restart"
post 0 "$N" after-restart
wait_drained 120
check_all_processed 30
ql_say "final /stats: $(stats | jq -c '{queue: .queue | {type, total_enqueued, total_dequeued, current_size, redelivered, duplicates}, pool: .pool | {processed_count, error_count}}')"
if [ "${NATS_NODES:-1}" = 3 ]; then
  cluster=$(stats | jq -c '.queue.cluster | {leader, meta_leader, replicas: [.replicas[] | {name, current, lag}]}')
  [ "$(jq -r .leader <<<"$cluster")" != null ] || fail "/stats names no stream leader on the cluster"
  ql_say "cluster: $cluster"
fi
ql_say "acknowledged: $(sort -u "$acked" | wc -l) ids, all processed"
