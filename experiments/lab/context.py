"""One notebook run: its id, repetition, parameters and folder; collects records, writes the run document."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.lab.record import RunLabels
from experiments.lab.session import Session
from experiments.lab.setup import Setup
from experiments.results.schema import PublishRate, ResultRecord, RunDocument, RunInfo, write_run
from experiments.runtime.environment import environment
from experiments.runtime.paths import RESULTS

if TYPE_CHECKING:
    import pandas as pd

ADHOC_DIR = RESULTS / "adhoc"  # a notebook run outside a batch


class RunContext:
    """One notebook run: collects result records and writes `runs/<run_id>.json`."""

    def __init__(
        self,
        experiment: str,
        *,
        run_id: str = "",
        repetition: int = 0,
        results_dir: str | Path = "",
        params: dict[str, Any] | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_id = run_id or f"{experiment}-adhoc-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}"
        self.repetition = repetition
        self.results_dir = Path(results_dir) if results_dir else ADHOC_DIR
        self.params = params or {}
        self.records: list[ResultRecord] = []
        self.publish_rates: list[PublishRate] = []  # raw publish-rate measurements (power-loss suite)
        self.servers: dict[str, str] = {}  # what the NATS servers said of themselves (monitoring endpoints)
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    @property
    def labels(self) -> RunLabels:
        return RunLabels(self.experiment, self.run_id, self.repetition, self.params)

    def session(self, setup: Setup) -> Session:
        return Session(self, setup)

    def add(self, record: ResultRecord) -> None:
        self.records.append(record)

    def frame(self) -> pd.DataFrame:
        """The rows so far as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([r.row.model_dump() for r in self.records])

    def save(self) -> Path:
        """Write the run document; the batch runner treats its presence as 'this run is done'."""
        env = dict(environment())
        providers = sorted({r.row.broker_provider for r in self.records} - {"none"})
        env["broker_provider"] = ",".join(providers) or "none"
        env.update(self.servers)
        doc = RunDocument(
            run=RunInfo(
                run_id=self.run_id,
                notebook=self.experiment,
                repetition=self.repetition,
                parameters=self.params,
                started_at=self.started_at,
                wall_time_s=round(time.perf_counter() - self._t0, 3),
            ),
            environment=env,
            results=self.records,
            publish_rates=self.publish_rates,
        )
        return write_run(self.results_dir / "runs" / f"{self.run_id}.json", doc)
