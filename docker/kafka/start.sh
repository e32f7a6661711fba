#!/bin/bash
# The compose stack's Kafka: one KRaft node in combined mode (broker and
# controller), its store in /data (a volume). The image carries the lab's
# server.properties for it (/opt/kafka/compose.properties: 127.0.0.1, client
# port 9092, controller port 9093, made by experiments/runtime/kafka/config.py
# when the image is built); KAFKA_OVERRIDES (key=value lines) is appended
# and wins. The store is formatted on the first start only.
# Environment: KAFKA_OVERRIDES, KAFKA_HEAP (512m).
set -euo pipefail
conf=/data/server.properties
cp /opt/kafka/compose.properties "$conf"
printf '%s\n' "${KAFKA_OVERRIDES:-}" >>"$conf"
cp="/opt/kafka/libs/*"
logs="-Dkafka.logs.dir=/data/logs -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties"
if [ ! -f /data/kafka/meta.properties ]; then
  # shellcheck disable=SC2086  # $logs is two options
  java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m $logs -cp "$cp" \
    kafka.tools.StorageTool format -t "$(cat /opt/kafka/cluster-id)" -c "$conf"
fi
heap=${KAFKA_HEAP:-512m}
# shellcheck disable=SC2086
exec java "-Xmx$heap" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true $logs -cp "$cp" kafka.Kafka "$conf"
