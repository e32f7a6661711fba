"""The cluster experiment's phases: R1 vs R3 vs memory at the same rates, and one cluster fault seen by the clients.

`label` marks a row with nodes and replicas. `failover` runs one cluster
fault through the phase pipeline (`lab.phase.run_phase` with `FAILOVER`
options), which adds to the usual record what only a failover has: the
per-`BIN_S` timeline of publishes ok / refused and client latency, the
moment a new leader was seen, and the time to recover.
"""

from __future__ import annotations

import dataclasses

from experiments.lab.phase import FAILOVER, run_phase
from experiments.lab.record import PhaseSpec
from experiments.lab.session import Session
from experiments.results.schema import ResultRecord
from experiments.runtime.nats.cluster import NatsCluster
from experiments.workload.faults import FaultStep


def label(session: Session, record: ResultRecord) -> ResultRecord:
    """Nodes and replicas of the session's deployment on its row (0 and 0 for the memory queue)."""
    nats = session.nats
    if nats is None:
        record.row.nats_nodes, record.row.replicas = 0, 0
    else:
        record.row.nats_nodes = int(getattr(nats, "size", 1))
        record.row.replicas = int(session.stack.backend_settings.nats_replicas)
    return record


async def failover(
    session: Session,
    phase: str,
    step: FaultStep,
    *,
    rate: float,
    duration_s: float,
    payload_bytes: int = 128,
    drain_timeout_s: float = 30.0,
) -> ResultRecord:
    """One fault on the session's cluster at `step.at_s` under `rate` msg/s; the record with its failover series."""
    if not isinstance(session.nats, NatsCluster):
        raise ValueError(f"fault {step.label} needs a cluster the harness started (this session has {session.nats!r})")
    spec = PhaseSpec(phase, rate, duration_s, payload_bytes, 1)
    record = await run_phase(session, spec, step, dataclasses.replace(FAILOVER, drain_timeout_s=drain_timeout_s))
    return label(session, record)
