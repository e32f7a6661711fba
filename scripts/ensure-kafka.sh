#!/usr/bin/env bash
# Apache Kafka's jars (the broker, the storage tool, kafka-tools' perf tools) for
# the Kafka broker the lab starts itself (experiments/runtime/kafka/).
# The release is pinned in scripts/kafka/pom.xml (<kafka.version>); Maven copies
# it and its dependencies from Maven Central into a cache outside the repo:
#   ${QUEUE_LAB_KAFKA_HOME:-$HOME/.cache/queue-lab/kafka-<version>}/libs
# Idempotent: quick when the cache was filled from the same pom (its sha256 is
# kept in libs/.pom-sha256); concurrent runs wait on a lock. Prints the libs
# directory on stdout; everything else goes to stderr.
# Needs Java 17+ and Maven: installed from Debian's packages when root and missing.
# Then the class archive (experiments/runtime/kafka/class_archive.py): Kafka's classes
# dumped once by a throwaway broker, so every later Kafka JVM starts on about half
# the CPU; skipped when the venv is not there yet.
# Called by scripts/test.sh, scripts/main.sh and the Python side when the cache is empty.
set -euo pipefail
cd "$(dirname "$0")/.."
pom=scripts/kafka/pom.xml
say() { echo "ensure-kafka: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
[ -n "$version" ] || die "no <kafka.version> in $pom"
home=${QUEUE_LAB_KAFKA_HOME:-$HOME/.cache/queue-lab/kafka-$version}
libs=$home/libs
pom_sha=$(sha256sum "$pom" | cut -d' ' -f1)
class_archive() {
  if [ -x .venv/bin/python ]; then
    .venv/bin/python -m experiments.runtime.kafka.class_archive || say "no class archive: Kafka JVMs start without it"
  fi
}
if [ "$(cat "$libs/.pom-sha256" 2>/dev/null)" = "$pom_sha" ]; then
  class_archive
  echo "$libs"
  exit 0
fi

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
need=()
command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ] 2>/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "Kafka needs Java 17+ and Maven; install them: sudo apt-get install ${need[*]}"
  fi
  say "installing ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
fi

mkdir -p "$home"
exec 9>"$home/.lock"
flock 9
# Another run may have filled it while this one waited.
if [ "$(cat "$libs/.pom-sha256" 2>/dev/null)" = "$pom_sha" ]; then
  class_archive
  echo "$libs"
  exit 0
fi
t0=$SECONDS
say "fetching Apache Kafka $version (kafka_2.13, kafka-tools) with Maven into $libs"
tmp=$(mktemp -d "$home/libs.tmp.XXXXXX")
# shellcheck disable=SC2064  # expand now: the path is fixed
trap "rm -rf '$tmp'" EXIT
mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime >"$home/mvn.log" 2>&1 || {
  tail -n 30 "$home/mvn.log" >&2
  die "mvn dependency:copy-dependencies failed (log: $home/mvn.log); Maven Central must be reachable"
}
for jar in kafka_2.13 kafka-server kafka-tools kafka-clients log4j-core log4j-slf4j-impl; do
  ls "$tmp/$jar-"*.jar >/dev/null 2>&1 || die "$jar missing from what Maven copied"
done
echo "$pom_sha" >"$tmp/.pom-sha256"
rm -rf "$libs"
mv "$tmp" "$libs"
trap - EXIT
say "Kafka $version: $(find "$libs" -name '*.jar' | wc -l) jars, $(du -sh "$libs" | cut -f1) in $((SECONDS - t0))s"
exec 9>&-  # the class archive takes its own lock
class_archive
echo "$libs"
