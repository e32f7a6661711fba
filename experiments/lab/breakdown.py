"""Where a phase's time and CPU went: what `Session.measure` adds to each record (schema v2).

Three calls from the session: `PhaseBreakdown.begin(...)` before the load,
`load_done()` after it, `annotate(record, ...)` once the record is built.
Kept beside the record builder, not inside it, so either can change alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments.lab.cpu import CpuWindow, measured_processes, summarize
from experiments.lab.ledger_stages import phase_stages
from experiments.results.schema import ResultRecord
from experiments.runtime.broker import BrokerServer
from experiments.runtime.stack import Stack
from experiments.workload.load import LoadResult


@dataclass
class PhaseBreakdown:
    cpu: CpuWindow
    ledger_paths: list[Path]

    @classmethod
    def begin(cls, stack: Stack, broker: BrokerServer | None) -> PhaseBreakdown:
        window = CpuWindow(measured_processes(stack, broker))
        window.start()
        return cls(window, list(stack.ledger_paths))

    def load_done(self) -> None:
        self.cpu.load_done()

    def annotate(
        self,
        record: ResultRecord,
        result: LoadResult,
        prefix: str,
        ids_of: Callable[[int], list[str]],
        t0: float,
        t0_ns: int,
    ) -> None:
        """Stages into the series; CPU per message and the client-bound flag into row and series."""
        self.cpu.stop()
        ids = {r.seq: ids_of(r.seq) for r in result.records if 200 <= r.status < 300}
        record.series.stages = phase_stages(self.ledger_paths, prefix, result, ids, t0, t0_ns)
        cpu = summarize(self.cpu, record.row.processed)
        record.series.cpu_us_per_msg = cpu.per_process_us
        row = record.row
        row.cpu_us_per_msg = cpu.total_us
        row.client_cpu_pct = cpu.client_pct
        row.machine_cpu_pct = cpu.machine_pct
        row.client_bound = cpu.client_bound
