"""The fault matrix's rows: one per fault test, printed at the end of the run and written to a file.

Jepsen's queue workload, in small: A = ids sent, G = ids that got a 2xx,
P = ids processed (the processors' ledgers). A row holds those counts and
what follows from them (lost = G - P, duplicated = ids processed more than
once), so the summary is computed from the same sets the tests assert on,
never typed in by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from experiments.workload.accounting import Accounting

REPORT_DIR = Path(os.environ.get("PYTEST_REPORT_DIR", ".pytest-reports"))
REPORT_FILE = "fault-matrix.txt"


@dataclass(frozen=True)
class MatrixRow:
    """One fault, one backend: the accounting by message id and where the broker ran."""

    fault: str
    backend: str  # memory | nats
    where: str  # process | docker | -   (how NATS ran)
    sent: int
    acked: int
    processed: int
    lost: int
    duplicated: int
    note: str = ""
    recovered: int | None = None  # refused or timed out, yet stored and processed (cluster rows)

    @classmethod
    def from_accounting(
        cls, fault: str, backend: str, where: str, acc: Accounting, note: str = "", *, with_recovered: bool = False
    ) -> MatrixRow:
        return cls(
            fault=fault,
            backend=backend,
            where=where,
            sent=len(acc.sent),
            acked=len(acc.acked),
            processed=len(acc.processed),
            lost=len(acc.lost),
            duplicated=len(acc.duplicated),
            note=note,
            recovered=len(acc.unacked_processed) if with_recovered else None,
        )

    def line(self) -> str:
        return (
            f"{self.fault:<44} {self.backend:<6} {self.where:<7} A={self.sent:<5} G={self.acked:<5} "
            f"P={self.processed:<5} lost={self.lost:<4} duplicated={self.duplicated:<3} "
            f"{'' if self.recovered is None else f'recovered={self.recovered:<4} '}{self.note}"
        ).rstrip()


@dataclass
class FaultMatrix:
    """Rows appended by the fault tests (in run order) and the wall time they took."""

    rows: list[MatrixRow] = field(default_factory=list)
    seconds: float = 0.0  # setup + call + teardown of every test marked `faults`

    def add(self, row: MatrixRow) -> MatrixRow:
        self.rows.append(row)
        return row

    def lines(self) -> list[str]:
        header = f"{'fault':<44} {'queue':<6} {'nats':<7} sent, 2xx, processed, lost, duplicated (by id)"
        out = [header, *(r.line() for r in self.rows)]
        nats_lost = sum(r.lost for r in self.rows if r.backend == "nats")
        out.append(
            f"{len(self.rows)} rows; lost on NATS rows: {nats_lost}; "
            f"wall time of the tests marked faults: {self.seconds:.1f} s"
        )
        return out

    def write(self, directory: Path = REPORT_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / REPORT_FILE
        path.write_text("\n".join(self.lines()) + "\n")
        return path
