"""A running deployment inside a notebook run, and its measured phases.

A `Session` is one deployment of a `Setup`: NATS from the provider
(`HARNESS_NATS`) when the backend needs it, then processor(s), ingest and
gateway as uvicorn processes. `Session.measure` runs one phase through the
phase pipeline (`lab.phase.run_phase`): open-loop load through the gateway
with client-given ids, an optional fault, a drain, and the accounting by id
from the processors' ledgers -> one `ResultRecord`. Its records go to a
`RecordSink` (a notebook run's `RunContext`), which it knows only by that
small protocol: the context makes sessions, not the other way round.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from experiments.lab.phase import PhaseOptions, run_phase, warm_up
from experiments.lab.record import BIN_S, LedgerEntry, PhaseSpec, RecordSink
from experiments.lab.setup import KAFKA_FLUSH_EACH, Setup
from experiments.results.schema import ResultRecord
from experiments.runtime.broker import BrokerServer
from experiments.runtime.kafka.provider import KafkaCluster, KafkaServer, kafka_server_from_env
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.lazy import LazyNats
from experiments.runtime.nats.monitoring import describe_servers, merge_descriptions
from experiments.runtime.nats.provider import NatsServer, nats_server_from_env
from experiments.runtime.stack import Stack, StackConfig
from experiments.runtime.tcp_proxy import TcpProxy
from experiments.workload.faults import Deployment, FaultStep
from services.ledger import LedgerTail


@dataclass
class _Ledgers:
    """The processors' ledgers read incrementally (`services.ledger.LedgerTail`, one per file)."""

    paths: list[Path]
    rows: list[LedgerEntry] = field(default_factory=list)
    _tails: list[LedgerTail] = field(init=False)

    def __post_init__(self) -> None:
        self._tails = [LedgerTail(p) for p in self.paths]

    def track(self, paths: list[Path]) -> None:
        """Also read these ledgers (a queue switch adds processors); the stopped ones' stay read."""
        for p in paths:
            if p not in self.paths:
                self.paths.append(p)
                self._tails.append(LedgerTail(p))

    def poll(self) -> None:
        for tail in self._tails:
            self.rows.extend((r.id, r.created_at, r.processed_at, r.outcome) for r in tail.poll())


def _kafka_for(setup: Setup, store_dir: Path) -> KafkaServer:
    """The Kafka a setup asks for (not started yet): from `HARNESS_KAFKA`, or on lazy stores for power loss.

    A lazy store needs brokers the harness runs as processes, whatever
    `HARNESS_KAFKA` says (as for NATS): one node unless `setup.nodes` asks for 3.
    """
    if setup.client_proxy:
        raise ValueError("Setup: a client proxy is NATS-only so far")
    overrides = KAFKA_FLUSH_EACH if setup.backend == "kafka-flush" else None
    if setup.store == "lazyfs":
        return KafkaCluster(store_dir, nodes=setup.nodes or 1, lazy=True, writeback_s=setup.writeback_s,
                            overrides=overrides, partitionable=setup.partitionable)  # fmt: skip
    return kafka_server_from_env(store_dir, nodes=setup.nodes, overrides=overrides, partitionable=setup.partitionable)


class Session:
    """A running deployment of one `Setup`; use as `async with ctx.session(setup) as s`."""

    def __init__(self, ctx: RecordSink, setup: Setup) -> None:
        self.ctx = ctx
        self.setup = setup
        self._tmp = tempfile.TemporaryDirectory(prefix=f"lab-{setup.backend}-")
        self.workdir = Path(self._tmp.name)
        self.nats: NatsServer | None = None
        self.kafka: KafkaServer | None = None
        env = setup.service_env
        brokers = {setup.family, setup.standby}  # the queue's broker, and a standby to switch to
        if "kafka" in brokers:
            self.kafka = _kafka_for(setup, self.workdir / "kafka")
        if "nats" in brokers:
            sync = setup.backend == "nats-sync"
            if setup.store == "lazyfs" and setup.nodes is not None and setup.nodes > 1:
                self.nats = NatsCluster(self.workdir / "nats", nodes=setup.nodes, sync_always=sync, lazy=True,
                                        writeback_s=setup.writeback_s, partitionable=setup.partitionable)  # fmt: skip
            elif setup.store == "lazyfs":
                self.nats = LazyNats(self.workdir / "nats", sync_always=sync, writeback_s=setup.writeback_s)
            else:
                self.nats = nats_server_from_env(
                    self.workdir / "nats", sync_always=sync, nodes=setup.nodes, partitionable=setup.partitionable
                )
        self.client_proxy: TcpProxy | None = None
        processor_env = {"PROCESSING_MS": str(setup.processing_ms)}
        if setup.client_proxy:
            if self.nats is None or getattr(self.nats, "size", 1) != 1 or not hasattr(self.nats, "port"):
                raise ValueError("Setup(client_proxy=True) needs a broker of one node the harness starts")
            self.client_proxy = TcpProxy(int(self.nats.port)).start()
            processor_env["NATS_URL"] = f"nats://{self.client_proxy.url_host_port}"
        self.stack = Stack(
            StackConfig(
                queue=setup.family,
                workers=setup.workers,
                processors=setup.processors,
                env=env,
                processor_env=processor_env,
            ),
            self.workdir / "stack",
            nats=self.nats,
            kafka=self.kafka,
        )
        self.ledgers = _Ledgers(self.stack.ledger_paths)
        self._http: aiohttp.ClientSession | None = None

    @property
    def brokers(self) -> dict[str, BrokerServer]:
        """Every broker of the deployment by queue family: the queue's own and a standby."""
        found: dict[str, BrokerServer | None] = {"nats": self.nats, "kafka": self.kafka}
        return {family: b for family, b in found.items() if b is not None}

    @property
    def broker(self) -> BrokerServer | None:
        """The deployment's broker: the queue's own, else the standby (None: the memory queue alone)."""
        brokers = self.brokers
        return brokers.get(self.setup.family) or next(iter(brokers.values()), None)

    @property
    def broker_provider(self) -> str:
        return self.broker.kind if self.broker is not None else "none"

    @property
    def gateway_url(self) -> str:
        return self.stack.gateway_url

    def deployment(self) -> Deployment:
        """What a fault can reach in this deployment: the queue's own broker (NATS or Kafka) is the one a
        `queue`/`broker` fault hits; a standby is reached only through `brokers` (a switch), so a fault on the
        memory queue hits its processor even when a broker waits beside it."""
        own = self.brokers.get(self.setup.family)
        return Deployment(self.stack, own, self.client_proxy, brokers=self.brokers)

    def _start(self) -> None:
        try:
            if self.nats is not None:
                self.nats.start()
                merge_descriptions(self.ctx.servers, describe_servers(self.nats.monitor_url))
            if self.kafka is not None:
                self.kafka.start()
            self.stack.start()
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        try:
            self.stack.stop(together=True)  # measure() returns only after its load and drain
        finally:
            if self.client_proxy is not None:
                self.client_proxy.close()
            if self.nats is not None:
                self.nats.close()
            if self.kafka is not None:
                self.kafka.close()
            self._tmp.cleanup()

    async def __aenter__(self) -> Session:
        await asyncio.to_thread(self._start)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2), trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(self._stop)

    async def stats(self) -> dict[str, Any] | None:
        """The first processor's `/stats` (None while it is down or frozen)."""
        assert self._http is not None
        try:
            async with self._http.get(f"{self.stack.processor_url}/stats") as resp:
                return dict(await resp.json()) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def post(self, body: Any) -> tuple[int, Any]:
        """POST a JSON body to the gateway's /api/v1/ingest: (status, answer)."""
        assert self._http is not None
        async with self._http.post(f"{self.gateway_url}/api/v1/ingest", json=body) as resp:
            return resp.status, await resp.json()

    async def get(self, url: str) -> Any:
        """GET any JSON endpoint of the stack (e.g. `/api/v1/status` on the gateway, `/stats` on the processor)."""
        assert self._http is not None
        async with self._http.get(url) as resp:
            return await resp.json()

    async def backlog(self) -> int | None:
        """Messages waiting or unacked: one shared consumer for NATS, one queue per processor for memory."""
        assert self._http is not None
        urls = [p.url for p in self.stack.processors] if self.setup.family == "memory" else [self.stack.processor_url]
        total = 0
        for url in urls:
            try:
                async with self._http.get(f"{url}/stats") as resp:
                    if resp.status != 200:
                        return None
                    total += int((await resp.json())["queue"]["current_size"])
            except (aiohttp.ClientError, TimeoutError):
                return None
        return total

    async def measure(
        self,
        phase: str,
        *,
        rate: float,
        duration_s: float,
        payload_bytes: int = 128,
        batch_size: int = 1,
        fault: FaultStep | None = None,
        max_in_flight: int = 256,
        drain_timeout_s: float = 30.0,
        settle_s: float = 0.5,
        bin_s: float = BIN_S,
    ) -> ResultRecord:
        """One phase: `rate` messages/s for `duration_s`, then drain and account by id (timeline in `bin_s` bins)."""
        spec = PhaseSpec(phase, rate, duration_s, payload_bytes, batch_size, fault or FaultStep(), bin_s)
        options = PhaseOptions(max_in_flight=max_in_flight, drain_timeout_s=drain_timeout_s, settle_s=settle_s)
        return await run_phase(self, spec, options=options)

    async def warm_up(self, *, rate: float, duration_s: float, payload_bytes: int = 128) -> int:
        """Unmeasured load before the first phase (`lab.phase.warm_up`): the count acknowledged."""
        return await warm_up(self, rate, duration_s, payload_bytes)
