"""Where the Kafka jars are: the cache scripts/ensure-kafka.sh fills with Maven, and the java to run them.

The release is pinned once, in scripts/kafka/pom.xml (`<kafka.version>`); the
cache is `${QUEUE_LAB_KAFKA_HOME:-~/.cache/queue-lab/kafka-<version>}/libs`,
outside the repository. `kafka_libs()` runs the ensure script when the cache
is missing, so a test or a notebook started without `make` still finds Kafka.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
POM = REPO / "scripts" / "kafka" / "pom.xml"
ENSURE_SCRIPT = REPO / "scripts" / "ensure-kafka.sh"
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
HOME_ENV = "QUEUE_LAB_KAFKA_HOME"


class KafkaUnavailable(RuntimeError):
    """Java or the Kafka jars are missing and could not be installed; the message says what to do."""


@cache
def kafka_version() -> str:
    """The pinned release, from `<kafka.version>` in scripts/kafka/pom.xml."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not found:
        raise KafkaUnavailable(f"no <kafka.version> in {POM}")
    return found.group(1).strip()


def kafka_home() -> Path:
    """The cache directory (its `libs/` holds the jars)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "queue-lab" / f"kafka-{kafka_version()}"


def _filled(libs: Path) -> bool:
    return (libs / ".pom-sha256").is_file()


@cache
def kafka_libs() -> Path:
    """The jar directory, filled first by scripts/ensure-kafka.sh when empty (a minute, once per machine)."""
    libs = kafka_home() / "libs"
    if _filled(libs):
        return libs
    if not ENSURE_SCRIPT.is_file():
        raise KafkaUnavailable(f"no Kafka jars in {libs} and no {ENSURE_SCRIPT} to fetch them")
    done = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not _filled(libs):
        raise KafkaUnavailable(f"scripts/ensure-kafka.sh failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return libs


def java_binary() -> str:
    """`$JAVA_HOME/bin/java` when set, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise KafkaUnavailable(
            "no java on PATH: Kafka needs Java 17+ (bash scripts/ensure-kafka.sh installs it as root)"
        )
    return found


def classpath() -> str:
    """`libs/*`: the JVM expands the wildcard itself."""
    return str(kafka_libs() / "*")
