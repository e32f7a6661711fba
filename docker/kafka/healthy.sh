#!/bin/bash
# Healthy = the node answers a Kafka request on its client listener: an
# ApiVersions request (v0, correlation id 1) gets a response carrying that
# correlation id and error code 0. The client listener takes requests only
# once the broker has caught up with the metadata quorum and is unfenced, so
# this is more than a port probe, and costs no JVM (a tool's JVM took over
# 20 s to start on a busy 2-core machine).
# Environment: KAFKA_HEALTH_BOOTSTRAP (127.0.0.1:9092).
set -euo pipefail
addr=${KAFKA_HEALTH_BOOTSTRAP:-127.0.0.1:9092}
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
# size 10 | api key 18 (ApiVersions) | version 0 | correlation id 1 | client id null
printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff' >&3
answer=$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')
# response: size (4 bytes) | correlation id 00000001 | error code 0000
[ "${answer:8:12}" = "000000010000" ] || { echo "no ApiVersions answer from $addr (got '$answer')" >&2; exit 1; }
