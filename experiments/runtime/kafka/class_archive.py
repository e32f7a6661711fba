"""Kafka's classes as a CDS archive: every broker and storage-tool JVM maps them instead of loading them again.

A KRaft node loads and verifies thousands of classes before it serves
metadata; the suite and the batch start such a JVM dozens of times on 2 cores.
Java's class-data sharing keeps those classes, once loaded, in an archive the
next JVM maps (`-XX:SharedArchiveFile`). Measured here, one node at a time,
JVM CPU time from launch to ready: 4.6-5.2 s without the archive, 2.7-2.9 s with it
(four interleaved rounds); the storage tool's format 1.1 s -> 0.65 s of CPU.

The archive is dumped once per machine, per Kafka release and JDK: a throwaway
broker runs with `-XX:ArchiveClassesAtExit` until ready and is stopped cleanly
(the JVM writes the archive as it exits). It lives beside the jars
(`kafka_home()`), named after the JDK, so another JDK or release dumps its
own. Without it (not dumped yet, or `QUEUE_LAB_KAFKA_CDS=0`), JVMs start as
before; a stale one is ignored by the JVM (`-Xshare:auto`, its default).
Containers do not use it: their image has its own JDK and paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from experiments.runtime.kafka.jars import java_binary, kafka_home, kafka_libs

ENV = "QUEUE_LAB_KAFKA_CDS"  # "0": start every Kafka JVM without the archive (to compare)


def archive_path() -> Path:
    """Where this JDK's archive of this release's classes is (or would be)."""
    java = Path(java_binary()).resolve()
    jdk = hashlib.sha256(f"{java}:{java.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    pom = (kafka_libs() / ".pom-sha256").read_text().strip()[:12]
    return kafka_home() / f"classes-{pom}-{jdk}.jsa"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def archive_options() -> list[str]:
    """`-XX:SharedArchiveFile=...` when the archive exists and is wanted, else nothing."""
    if not enabled():
        return []
    path = archive_path()
    return [f"-XX:SharedArchiveFile={path}"] if path.is_file() else []


def ensure_archive() -> Path:
    """Dump the archive unless it is there (one broker start and stop, ~10 s once); concurrent callers wait."""
    path = archive_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".class-archive.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():  # another process dumped it while this one waited
            return path
        _dump(path)
    return path


def _dump(path: Path) -> None:
    from experiments.runtime.kafka.cluster import KafkaCluster  # the cluster module imports this one

    partial = path.with_suffix(f".{os.getpid()}.tmp")
    with tempfile.TemporaryDirectory(prefix="kafka-cds-") as tmp:
        cluster = KafkaCluster(tmp, nodes=1)
        node = cluster.nodes[0]
        node.extra_jvm_options = [f"-XX:ArchiveClassesAtExit={partial}"]
        try:
            node.start()
            node.stop(timeout=60.0)  # a clean exit writes the archive
        finally:
            cluster.close()
    if not partial.is_file():
        raise RuntimeError(f"the JVM wrote no class archive at {partial} (see its console.log)")
    os.replace(partial, path)


def main() -> None:
    """`python -m experiments.runtime.kafka.class_archive`: dump it if missing; print its path and size."""
    t0 = time.monotonic()
    existed = archive_path().is_file()
    path = ensure_archive()
    took = "already there" if existed else f"dumped in {time.monotonic() - t0:.1f} s"
    print(f"class archive: {path} ({path.stat().st_size // 2**20} MiB, {took})", file=sys.stderr)


if __name__ == "__main__":
    main()
