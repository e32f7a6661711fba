"""The result schema: one JSON document per run, one tidy row per measured phase.

Modelled on the OpenMessaging Benchmark result: offered and achieved rate,
publish (client) and end-to-end latency percentiles in ms, and counts by
message id (sent, acknowledged, processed, lost, duplicated). Every row
carries the parameters that produced it, so `pandas.concat` over any batch
gives a table that can be grouped without joins. Series that do not fit a
row (quantile curves for CDFs, throughput and backlog over time, fault
windows) sit beside it in the same document.

Versioned: `SCHEMA_VERSION` changes whenever a field changes meaning or is
added. Documents of an older version in `READABLE_VERSIONS` are read with
the newer fields empty (None, [], {}); any other version is refused instead
of being mixed in. Version 2 added the latency by stage, CPU per message and
the client-bound flag. Version 3 added `altered` (processed payloads whose
digest differs from the one stamped at the first hop), the Kafka backends
and broker-neutral names for the broker columns (`broker_provider`,
`broker_nodes`, `broker_rss_mib`; version 1 and 2 documents' `nats_*` keys
are read into them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # v1: before stages and CPU; v2: before `altered` and Kafka

# v1/v2 names of the broker columns -> v3 names
_RENAMED = {"nats_provider": "broker_provider", "nats_nodes": "broker_nodes", "nats_rss_mib": "broker_rss_mib"}

# nats-sync: JetStream with `sync_interval: always`; kafka-flush: Kafka with `log.flush.interval.messages=1`
# (each an fsync per write, the other's default relying on the page cache and, on a cluster, on replicas).
Backend = Literal["memory", "nats", "nats-sync", "kafka", "kafka-flush"]


class Timeline(BaseModel):
    """Time series of one phase; t in s from the start of the load."""

    model_config = ConfigDict(extra="forbid")

    t_s: list[float] = Field(default_factory=list)
    processed_per_s: list[float] = Field(default_factory=list, description="ledger rows per s, per bin")
    acked_per_s: list[float] = Field(default_factory=list, description="2xx messages per s, per bin (by send time)")
    errors_per_s: list[float] = Field(
        default_factory=list, description="messages answered non-2xx or not at all, per s, per bin (by send time)"
    )
    backlog_t_s: list[float] = Field(default_factory=list)
    backlog: list[int] = Field(default_factory=list, description="processor /stats current_size samples")


class FaultWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    start_s: float
    end_s: float
    leader_change_s: float | None = Field(default=None, description="a new stream leader first seen (cluster faults)")


class FailoverSeries(BaseModel):
    """What the clients saw per bin (by scheduled send time) around a cluster fault."""

    model_config = ConfigDict(extra="forbid")

    bin_s: float
    t_s: list[float] = Field(default_factory=list)
    ok: list[int] = Field(default_factory=list, description="publishes answered 2xx")
    failed: list[int] = Field(default_factory=list, description="publishes refused (5xx) or unanswered")
    p50_ms: list[float | None] = Field(default_factory=list, description="client latency p50 of the 2xx ones")
    max_ms: list[float | None] = Field(default_factory=list)


class StageStat(BaseModel):
    """One stage of a message's way (e.g. `store`, `queue wait`) over a phase's messages, in ms."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    n: int = Field(ge=0, description="messages with both stamps of this stage")
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_quantiles_ms: list[float] = Field(default_factory=list, description="q = 0, 0.01, ..., 1")
    e2e_quantiles_ms: list[float] = Field(default_factory=list, description="q = 0, 0.01, ..., 1")
    timeline: Timeline = Field(default_factory=Timeline)
    status_counts: dict[str, int] = Field(
        default_factory=dict, description="messages by the HTTP status their request got ('0': no answer)"
    )
    faults: list[FaultWindow] = Field(default_factory=list)
    stages: list[StageStat] = Field(
        default_factory=list, description="server stages in order (they add up to `total`), then client-side ones"
    )
    cpu_us_per_msg: dict[str, float] = Field(
        default_factory=dict, description="CPU µs per processed message, by process (gateway, processor-1, ...)"
    )
    failover: FailoverSeries | None = None
    processed_by: dict[str, int] = Field(
        default_factory=dict, description="messages processed by each processor instance (04: who did the work)"
    )


class ResultRow(BaseModel):
    """One measured phase (a backend at one offered rate, one fault, one scale...)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    experiment: str
    run_id: str
    repetition: int = Field(ge=0)
    backend: Backend
    broker_provider: str = Field(description="the broker's provider: process, docker, external, or none (memory)")
    broker_nodes: int = Field(1, ge=0, description="nats-servers or Kafka brokers in the deployment (0: memory)")
    replicas: int = Field(1, ge=0, description="stream or topic replicas (0: memory)")
    partitions: int | None = Field(None, ge=1, description="the Kafka topic's partitions (None: not Kafka)")
    phase: str = Field(description="what varied inside the run, e.g. rate=500 or fault=kill")
    # workload
    offered_rate: float = Field(ge=0, description="messages/s on the schedule")
    duration_s: float = Field(gt=0)
    payload_bytes: int = Field(ge=0)
    batch_size: int = Field(ge=1, description="messages per request")
    workers: int = Field(ge=1)
    processors: int = Field(ge=1)
    processing_ms: float = Field(ge=0)
    fault: str = "none"
    # rates
    achieved_rate: float = Field(ge=0, description="acknowledged messages/s over the load window")
    processed_rate: float = Field(ge=0, description="messages processed/s while the load ran")
    # client (publish) latency: from the scheduled send time to the 2xx, ms
    client_p50_ms: float | None  # None: no sample
    client_p90_ms: float | None  # None: no sample
    client_p99_ms: float | None  # None: no sample
    client_p999_ms: float | None  # None: no sample
    client_max_ms: float | None  # None: no sample
    # end to end: created_at (ingest) to processed (worker), ms
    e2e_p50_ms: float | None  # None: no sample
    e2e_p90_ms: float | None  # None: no sample
    e2e_p99_ms: float | None  # None: no sample
    e2e_p999_ms: float | None  # None: no sample
    e2e_max_ms: float | None  # None: no sample
    # accounting by message id (A, G, P)
    sent: int = Field(ge=0)
    acknowledged: int = Field(ge=0)
    processed: int = Field(ge=0, description="distinct sent ids found processed in the ledgers")
    lost: int = Field(ge=0, description="acknowledged but never processed")
    lost_prefix: int = Field(0, ge=0, description="lost, sent before the first processed acknowledged id")
    lost_middle: int = Field(0, ge=0, description="lost, sent between processed acknowledged ids")
    lost_postfix: int = Field(0, ge=0, description="lost, sent after the last processed acknowledged id")
    recovered: int = Field(0, ge=0, description="acknowledged before the fault, first processed after it")
    duplicated: int = Field(ge=0, description="ids processed more than once")
    altered: int = Field(0, ge=0, description="ids processed with a payload digest other than the one sent (v3)")
    extra_deliveries: int = Field(ge=0, description="processings beyond the first, summed")
    unacked_processed: int = Field(ge=0, description="processed although the client got no 2xx")
    rejected: int = Field(ge=0, description="messages answered 4xx (429 included)")
    errors: int = Field(ge=0, description="messages answered 5xx or with no answer")
    dead_lettered: int = Field(ge=0)
    # CPU over the load window (v2; None in v1 documents)
    cpu_us_per_msg: float | None = Field(None, description="CPU µs per processed message, all measured processes")
    client_cpu_pct: float | None = Field(None, description="load generator's CPU, % of one core")
    machine_cpu_pct: float | None = Field(None, description="whole machine's CPU busy, % of all cores")
    client_bound: bool | None = Field(
        None, description="the load generator or the machine was >= CLIENT_BOUND_PCT busy: measures the client"
    )
    recover_s: float | None = Field(default=None, description="fault start to the first 2xx after the first refusal")
    wall_time_s: float = Field(ge=0)
    params: str = Field(description="the notebook's parameters as JSON, for grouping")
    # resident memory with a backlog held (08_footprint; None in the other experiments)
    backlog: int | None = Field(None, ge=0, description="messages stored and not yet acked when sampled")
    queue_size: int | None = Field(None, ge=1, description="the memory queue's QUEUE_SIZE (None: NATS)")
    processor_rss_mib: float | None = Field(None, ge=0, description="processor's resident memory, MiB")
    broker_rss_mib: float | None = Field(
        None, ge=0, description="the broker's resident memory (nats-server or the Kafka JVM), MiB (None: memory)"
    )
    store_mib: float | None = Field(None, ge=0, description="the broker's store on disk, MiB (None: memory)")

    @model_validator(mode="before")
    @classmethod
    def _v2_names(cls, data: Any) -> Any:
        """Rows of v1/v2 documents name the broker columns `nats_*`: read them into the v3 names."""
        if isinstance(data, dict) and any(k in data for k in _RENAMED):
            data = {_RENAMED.get(k, k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ResultRow:
        if self.acknowledged > self.sent or self.processed > self.sent or self.lost > self.acknowledged:
            raise ValueError(
                f"counts inconsistent: sent={self.sent} acknowledged={self.acknowledged} "
                f"processed={self.processed} lost={self.lost}"
            )
        if self.acknowledged + self.rejected + self.errors != self.sent:
            raise ValueError("acknowledged + rejected + errors must equal sent")
        for prefix in ("client", "e2e"):
            values = [getattr(self, f"{prefix}_{p}_ms") for p in ("p50", "p90", "p99", "p999", "max")]
            finite = [v for v in values if v is not None]
            if finite != sorted(finite):
                raise ValueError(f"{prefix} percentiles not ordered: {values}")
        return self


class ResultRecord(BaseModel):
    """A row with its series: what a notebook produces per phase."""

    model_config = ConfigDict(extra="forbid")

    row: ResultRow
    series: Series = Field(default_factory=Series)


class PublishRate(BaseModel):
    """One raw JetStream publish-rate measurement (no HTTP): what a storage setting costs."""

    model_config = ConfigDict(extra="forbid")

    experiment: str
    run_id: str
    repetition: int = Field(ge=0)
    backend: Backend = Field(description="nats or kafka (default flush policy), nats-sync or kafka-flush (fsync each)")
    store: Literal["lazyfs", "plain"] = Field(description="the store on the lazy FUSE mount, or on a plain dir")
    mode: Literal["single", "pipelined"] = Field(description="one publish at a time, or publish_async in chunks")
    round: int = Field(ge=0, description="interleaved round within the run")
    messages: int = Field(ge=1)
    rate: float = Field(gt=0, description="acknowledged publishes/s")
    replicas: int = Field(1, ge=1, description="stream replicas: 1 on one node, 3 on three nodes")


class RunInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    notebook: str
    repetition: int
    parameters: dict[str, Any]
    started_at: str
    wall_time_s: float


class RunDocument(BaseModel):
    """`runs/<run_id>.json`: everything one notebook run measured."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run: RunInfo
    environment: dict[str, Any]
    results: list[ResultRecord]
    publish_rates: list[PublishRate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _version(self) -> RunDocument:
        if self.schema_version not in READABLE_VERSIONS:
            raise ValueError(f"schema_version {self.schema_version}, this code reads {READABLE_VERSIONS}")
        return self


ROW_COLUMNS: tuple[str, ...] = tuple(ResultRow.model_fields)


def write_run(path: str | Path, doc: RunDocument) -> Path:
    """Write atomically (temp file + rename): a killed batch never leaves half a result to skip over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc.model_dump(mode="json"), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    tmp.replace(path)
    return path


def read_run(path: str | Path) -> RunDocument:
    """Parse and validate one run document (raises with the failing field)."""
    return RunDocument.model_validate(orjson.loads(Path(path).read_bytes()))


PLAN_FILE = "plan.json"  # in a batch dir: the run ids of the batch file as last run (written by the runner)


def read_runs(runs_dir: str | Path, only: set[str] | None = None) -> list[RunDocument]:
    """The runs of a batch (those in `only`, when given), in run-id order (deterministic for the report)."""
    paths = sorted(Path(runs_dir).glob("*.json"))
    return [read_run(p) for p in paths if only is None or p.stem in only]


def planned_run_ids(batch_dir: str | Path) -> set[str] | None:
    """The run ids the batch file planned when it last ran, or None where no runner wrote a plan.

    A changed parameter gives a new run id; the document of the old one stays
    in `runs/` (so a batch resumes), and this keeps it out of the report.
    """
    path = Path(batch_dir) / PLAN_FILE
    if not path.exists():
        return None
    return set(orjson.loads(path.read_bytes())["runs"])
