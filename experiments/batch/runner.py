"""The batch runner: a YAML experiment file -> executed notebooks, run documents, report.

    diplom run experiments/batches/default.yaml [--quick] [--only 01_latency] [--fresh]

Each combination (notebook x parameter grid x repetition) runs with papermill
in its own process and kernel, with a timeout. A run whose document already
exists is skipped, so an interrupted batch resumes where it stopped; a
changed parameter gives a new run id, so a stale result is never reused.
After the runs the report notebook rebuilds `results.csv`, figures and
`report.html` from the run documents, and every executed notebook is also
written as HTML without code (`html/`). A failing notebook makes the batch
exit non-zero with the notebook, its parameters and the failing cell.

The file's format (modelled on OpenMessaging Benchmark workloads):

    batch: default                  # results/<batch>/
    timeout_s: 600                  # per run
    defaults: {}                    # parameters for every notebook
    runs:
      - notebook: 01_latency
        repetitions: 3
        parameters: {backends: [memory, nats], rates: [200, 500], duration_s: 10}
        grid: {payload_bytes: [128, 4096]}    # one run per combination
    report: 99_report
    quick:                          # --quick: overrides per notebook
      timeout_s: 120
      runs:
        01_latency: {repetitions: 2, parameters: {rates: [300], duration_s: 3}, grid: {}}
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from experiments.batch.export import notebooks_to_html
from experiments.results.schema import PLAN_FILE, read_run
from experiments.runtime import reaper
from experiments.runtime.paths import DEFAULT_BATCH, NOTEBOOKS, REPO, RESULTS
from experiments.runtime.processes import CHILDREN_ENV, descendants, die_with_parent, reap_registered, register_child

ParameterCheck = Callable[[str, dict[str, Any]], object]  # (notebook, parameters): raises ValueError if wrong


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notebook: str
    repetitions: int = Field(1, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class QuickOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repetitions: int | None = Field(None, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None


class QuickProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float | None = None
    runs: dict[str, QuickOverride] = Field(default_factory=dict)


class BatchFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    timeout_s: float = Field(600, gt=0)
    defaults: dict[str, Any] = Field(default_factory=dict)
    runs: list[RunSpec]
    report: str | None = "99_report"
    quick: QuickProfile | None = None


@dataclass(frozen=True)
class PlannedRun:
    notebook: str
    run_id: str
    repetition: int
    parameters: dict[str, Any]


@dataclass
class Failure:
    run: PlannedRun
    reason: str

    def describe(self) -> str:
        params = json.dumps(self.run.parameters)
        return f"{self.run.notebook} (run {self.run.run_id}) with parameters {params}: {self.reason}"


@dataclass
class BatchOutcome:
    batch_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    report_html: Path | None = None
    wall_time_s: float = 0.0


def load_batch(path: str | Path, quick: bool = False) -> BatchFile:
    """Parse and validate a batch file; `quick` applies its quick profile (and names the batch `<batch>-quick`)."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        batch = BatchFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not quick:
        return batch
    if batch.quick is None:
        raise ValueError(f"{path}: --quick asked for, but the file has no 'quick' section")
    runs = []
    for spec in batch.runs:
        o = batch.quick.runs.get(spec.notebook)
        if o is None:
            runs.append(spec)
            continue
        runs.append(
            RunSpec(
                notebook=spec.notebook,
                repetitions=o.repetitions or spec.repetitions,
                parameters={**spec.parameters, **o.parameters},
                grid=spec.grid if o.grid is None else o.grid,
            )
        )
    return batch.model_copy(
        update={
            "batch": f"{batch.batch}-quick",
            "runs": runs,
            "timeout_s": batch.quick.timeout_s or batch.timeout_s,
            "quick": None,
        }
    )


def _slug(params: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def plan(batch: BatchFile, only: set[str] | None = None) -> list[PlannedRun]:
    """Every (notebook, grid point, repetition), with a run id that changes when a parameter does."""
    planned = []
    for spec in batch.runs:
        if only and spec.notebook not in only:
            continue
        if not (NOTEBOOKS / f"{spec.notebook}.ipynb").exists():
            raise ValueError(f"notebook {spec.notebook!r} not found in {NOTEBOOKS}")
        keys = sorted(spec.grid)
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            params = {**batch.defaults, **spec.parameters, **point}
            label = ",".join(f"{k}={v}" for k, v in point.items())
            for rep in range(spec.repetitions):
                run_id = f"{spec.notebook}--{label + '--' if label else ''}{_slug(params)}--r{rep}"
                planned.append(PlannedRun(spec.notebook, run_id, rep, params))
    return planned


def check_plan(runs: list[PlannedRun], check: ParameterCheck) -> None:
    """Every planned run's parameters checked by its experiment; one ValueError naming each bad entry."""
    problems = []
    for run in runs:
        try:
            check(run.notebook, run.parameters)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("the batch file has bad parameters:\n" + "\n".join(dict.fromkeys(problems)))


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM papermill and everything below it by pid, then SIGKILL what is left."""
    pids = [proc.pid, *descendants(proc.pid)]  # the kernel papermill started, and what it started
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(0.5)  # let the kernel's children go too before the hard pass


def _wait_registering(proc: subprocess.Popen[bytes], timeout_s: float, registry: Path, every_s: float = 0.5) -> int:
    """Wait for papermill, registering its tree (the kernel, what the kernel started) as it grows.

    The kernel is launched by jupyter_client, not by us: registered here, the
    run's reaper stops it too when this process is killed.
    """
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    while True:
        for pid in {proc.pid, *descendants(proc.pid)} - seen:
            register_child(pid, str(registry))
            seen.add(pid)
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        try:
            return proc.wait(timeout=min(every_s, left))
        except subprocess.TimeoutExpired:
            continue


def failing_cell(notebook_path: Path) -> str:
    """'cell N: ExcType: message (first line of the cell)' from an executed notebook, or ''."""
    try:
        nb = nbformat.read(notebook_path, as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return ""
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return f"cell {index}: {out.get('ename')}: {out.get('evalue')} (cell starts: {first[:80]!r})"
    return ""


def execute(run: PlannedRun, batch_dir: Path, timeout_s: float) -> str | None:
    """Run one notebook with papermill in a child process; None when it wrote its run document."""
    out_nb = batch_dir / "notebooks" / f"{run.run_id}.ipynb"
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    params_file = batch_dir / ".params" / f"{run.run_id}.json"
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params = {**run.parameters, "run_id": run.run_id, "repetition": run.repetition, "results_dir": str(batch_dir)}
    params_file.write_text(json.dumps(params))
    children = batch_dir / ".children" / f"{run.run_id}.pids"
    children.parent.mkdir(parents=True, exist_ok=True)
    children.unlink(missing_ok=True)
    log_path = batch_dir / "logs" / f"{run.run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "papermill",
        str(NOTEBOOKS / f"{run.notebook}.ipynb"), str(out_nb),
        "-f", str(params_file),  # JSON is YAML
        "--cwd", str(NOTEBOOKS), "-k", "python3",
        "--no-progress-bar", "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, CHILDREN_ENV: str(children), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    env.setdefault("HARNESS_NATS", "auto")  # a container when a Docker engine answers, else the embedded process
    guard = reaper.start(children)  # stops what the run started even if this process is SIGKILLed
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=die_with_parent()
        )
        try:
            code = _wait_registering(proc, timeout_s, children)
        except subprocess.TimeoutExpired:
            _stop_tree(proc)
            code = None
        finally:
            reap_registered(str(children))
            reaper.stop(guard)
    if code is None:
        cell = failing_cell(out_nb)
        return f"timed out after {timeout_s:g} s{'; ' + cell if cell else ''} (log: {log_path})"
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        return f"papermill exited {code}: {failing_cell(out_nb) or ''.join(tail)} (log: {log_path})"
    doc = batch_dir / "runs" / f"{run.run_id}.json"
    if not doc.exists():
        return "the notebook finished but wrote no run document (does it call ctx.save()?)"
    try:
        read_run(doc)
    except (ValueError, OSError) as exc:
        return f"its run document is invalid: {exc}"
    return None


def _done(run: PlannedRun, batch_dir: Path) -> bool:
    doc = batch_dir / "runs" / f"{run.run_id}.json"
    if not doc.exists():
        return False
    try:
        read_run(doc)
    except (ValueError, OSError):
        return False
    return True


def run_report(batch: BatchFile, batch_dir: Path, timeout_s: float) -> str | None:
    """The report notebook over the batch's run documents (also what `diplom report` runs)."""
    if batch.report is None:
        return None
    report_run = PlannedRun(batch.report, batch.report, 0, {})
    return execute_report(report_run, batch_dir, timeout_s)


def execute_report(run: PlannedRun, batch_dir: Path, timeout_s: float) -> str | None:
    problem = execute(run, batch_dir, timeout_s)
    if problem and problem.startswith("the notebook finished but wrote no run document"):
        return None if (batch_dir / "report.html").exists() else "the report notebook wrote no report.html"
    return problem


def write_plan(batch_dir: Path, runs: list[PlannedRun]) -> Path:
    """Which run ids the batch file plans (all of them, `--only` or not): the report reads those and no others."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    path = batch_dir / PLAN_FILE
    path.write_text(json.dumps({"runs": sorted(r.run_id for r in runs)}, indent=1) + "\n")
    return path


def run_batch(
    path: str | Path,
    *,
    quick: bool = False,
    only: set[str] | None = None,
    fresh: bool = False,
    fail_fast: bool = False,
    results_root: Path = RESULTS,
    check: ParameterCheck | None = None,
) -> BatchOutcome:
    """Run the batch; `check` (the lab's `registry.check_parameters`) refuses a bad entry before anything starts."""
    started = time.perf_counter()
    batch = load_batch(path, quick)
    batch_dir = (results_root / batch.batch).resolve()
    planned = plan(batch, only)
    if check is not None:
        check_plan(plan(batch, None), check)
    write_plan(batch_dir, plan(batch, None))
    if fresh:
        for run in planned:
            (batch_dir / "runs" / f"{run.run_id}.json").unlink(missing_ok=True)
    outcome = BatchOutcome(batch_dir)
    bar = tqdm(planned, desc=f"batch {batch.batch}", unit="run", dynamic_ncols=True)
    for run in bar:
        bar.set_postfix_str(run.run_id[:48])
        if _done(run, batch_dir):
            outcome.skipped.append(run.run_id)
            continue
        problem = execute(run, batch_dir, batch.timeout_s)
        if problem is None:
            outcome.executed.append(run.run_id)
            continue
        outcome.failures.append(Failure(run, problem))
        tqdm.write(f"FAILED {outcome.failures[-1].describe()}")
        if fail_fast:
            break
    bar.close()
    if (batch_dir / "runs").exists() and any((batch_dir / "runs").glob("*.json")):
        problem = run_report(batch, batch_dir, batch.timeout_s)
        if problem is not None:
            outcome.failures.append(Failure(PlannedRun(batch.report or "report", "report", 0, {}), problem))
        else:
            outcome.report_html = batch_dir / "report.html"
            notebooks_to_html(batch_dir / "notebooks", batch_dir / "html")
    outcome.wall_time_s = time.perf_counter() - started
    return outcome


def main(argv: list[str] | None = None, check: ParameterCheck | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="diplom run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("batch_file", nargs="?", default=str(DEFAULT_BATCH))
    parser.add_argument("--quick", action="store_true", help="apply the file's quick profile (results/<batch>-quick)")
    parser.add_argument("--only", action="append", default=[], help="run only this notebook (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="re-run runs that already have results")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing run")
    parser.add_argument("--results", default=str(RESULTS), help="where batch folders go (default: results/)")
    args = parser.parse_args(argv)
    outcome = run_batch(
        args.batch_file,
        quick=args.quick,
        only=set(args.only) or None,
        fresh=args.fresh,
        fail_fast=args.fail_fast,
        results_root=Path(args.results),
        check=check,
    )
    print(
        f"batch: {len(outcome.executed)} runs executed, {len(outcome.skipped)} already done, "
        f"{len(outcome.failures)} failed, in {outcome.wall_time_s:.0f} s -> {outcome.batch_dir}"
    )
    if outcome.report_html:
        print(f"report: {outcome.report_html}")
    for f in outcome.failures:
        print(f"FAILED {f.describe()}", file=sys.stderr)
    return 1 if outcome.failures else 0


def report_main(argv: list[str] | None = None) -> int:
    """`diplom report results/<batch>`: rebuild the report from the run documents alone."""
    import argparse

    parser = argparse.ArgumentParser(prog="diplom report")
    parser.add_argument("batch_dir")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    batch_dir = Path(args.batch_dir).resolve()
    problem = execute_report(PlannedRun("99_report", "99_report", 0, {}), batch_dir, args.timeout)
    if problem:
        print(f"FAILED report: {problem}", file=sys.stderr)
        return 1
    print(f"report: {batch_dir / 'report.html'}")
    return 0
