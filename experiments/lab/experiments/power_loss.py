"""06 power loss: what fsync buys, and what it costs; its run, tables and figure (the report's from run documents).

Three queues: the memory queue (the baseline), JetStream (default fsync
policy and `sync_interval: always`) and Kafka (its default flush policy,
which never fsyncs and relies on replication, and `kafka-flush`, an fsync
per message), each broker node's store on its own lazy file system.

Counts are summed over repetitions (with the number of runs); publish
rates are medians with min..max; the cost ratios are taken per round (the
two settings measured back to back in one run) and then summarised, so a
slow moment of a shared machine hits both sides of a ratio alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from experiments.lab.context import RunContext
from experiments.lab.experiment import Experiment, ExperimentParams, FaultText, FigureSpec
from experiments.lab.experiments.replication import label, replica_env
from experiments.lab.setup import Setup
from experiments.results.chapters import power_loss as power_loss_claims
from experiments.results.plots import backend_style, median_range
from experiments.results.schema import Backend, PublishRate, RunDocument
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.provider import NatsServer
from experiments.workload.faults import FaultStep
from experiments.workload.faults.cluster_ops import LaggingMajority
from experiments.workload.faults.power import PowerLoss
from experiments.workload.faults.step import plot_name
from experiments.workload.faults.step import rank as fault_rank
from experiments.workload.publish import PUBLISH_MODES, publish_rate

NAME = "06_power_loss"
COUNTS = ["sent", "acknowledged", "processed", "lost", "lost_prefix", "lost_middle", "lost_postfix", "duplicated",
          "recovered", "errors"]  # fmt: skip
PUBLISH_COLUMNS = list(PublishRate.model_fields)
DEFAULT_POLICIES = ("nats", "kafka")  # the backends whose writes wait unsynced: the writeback knob applies to them


class Params(ExperimentParams):
    """Every knob of the power-loss experiment (R1 on one node; R3 on three)."""

    backends: tuple[Backend, ...] = ("memory", "nats", "nats-sync")
    writebacks: tuple[float | str | None, ...] = ("never", 30)  # the default policy's writeback (s), or never
    rate: float = 300.0  # msg/s offered through the gateway
    duration_s: float = 3.0
    fault_at_s: float = 2.0  # the power loss, s after the load started
    down_s: float = 0.5  # off this long before the restart
    processing_ms: float = 10.0  # one worker ~ 100 msg/s < rate: a backlog is at stake when the power goes
    workers: int = 1
    replicas: tuple[int, ...] = (1,)  # 1: one node (R1); 3: three nodes, an R3 stream or an RF 3 topic
    cluster_faults: tuple[FaultText, ...] = (f"{PowerLoss.kind}:leader", LaggingMajority.kind)  # JetStream on R3
    # Kafka on R3 (three brokers, RF 3, min.insync.replicas=2): all three lose power at once. The lagging
    # majority is JetStream's; a leader's power loss on Kafka is tests/test_kafka_power_loss.py's.
    kafka_cluster_faults: tuple[FaultText, ...] = (f"{PowerLoss.kind}:queue",)
    cluster_writebacks: tuple[float | str | None, ...] = ("never",)
    cluster_rate: float | None = None  # msg/s offered on R3 (default: rate)
    cluster_duration_s: float = 12.0  # load on R3: a leader election takes seconds
    lag_s: float = 1.0  # lagging majority: the follower is cut off this long before the leader's power goes
    publish_single: int = 300  # publishes per one-at-a-time measurement
    publish_pipelined: int = 2000  # publishes per pipelined measurement
    publish_rounds: int = 1  # interleaved rounds: plain dir and lazy FS back to back (JetStream)
    # Kafka's consumer buffer: small, so acknowledged messages wait in the broker (not in the processor's
    # memory) when the power goes; at the backend's default (1000) the processor holds the whole backlog.
    kafka_prefetch: int = 20


def publish_frame(rates: list[PublishRate]) -> pd.DataFrame:
    """Rates as rows; a run document from before R3 (no `replicas`) reads as R1."""
    return pd.DataFrame([r.model_dump() for r in rates], columns=PUBLISH_COLUMNS)


def publish_rates(docs: Sequence[RunDocument]) -> pd.DataFrame:
    """Every publish-rate measurement of every run, in a fixed order."""
    df = publish_frame([p for d in docs for p in d.publish_rates])
    return df.sort_values(["run_id", "replicas", "backend", "store", "mode", "round"], kind="stable").reset_index(
        drop=True
    )


def loss_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per setting: runs, and the counts by id summed over them."""
    part = rows[rows["experiment"] == NAME]
    g = part.groupby(["replicas", "backend", "broker_provider", "phase"], sort=True)
    t = g[COUNTS].sum()
    t.insert(0, "runs", g.size())
    t.insert(1, "lost_per_run", g["lost"].apply(lambda s: " ".join(str(int(v)) for v in s)))
    return t.reset_index()


def publish_table(publish: pd.DataFrame) -> pd.DataFrame:
    """Median publish rate (min..max, n) per replicas, policy, store and mode."""
    g = publish.groupby(["replicas", "backend", "store", "mode"], sort=True)["rate"]
    return pd.DataFrame({"median_msg_s": g.median(), "min": g.min(), "max": g.max(), "n": g.count()}).reset_index()


def _ratios(publish: pd.DataFrame, vary: str, num: str, den: str, keep: str) -> pd.DataFrame:
    key = ["run_id", "round", "replicas", keep, "mode"]
    a = publish[publish[vary] == num].set_index(key)["rate"]
    b = publish[publish[vary] == den].set_index(key)["rate"]
    r = (a / b).dropna().rename("ratio").reset_index()
    g = r.groupby(["replicas", keep, "mode"], sort=True)["ratio"]
    out = pd.DataFrame({"median": g.median(), "min": g.min(), "max": g.max(), "n": g.count()}).reset_index()
    out.insert(0, "ratio", f"{num} / {den}")
    return out.rename(columns={keep: "at"})


def cost_table(publish: pd.DataFrame) -> pd.DataFrame:
    """sync_always / default at each store, and lazy FS / plain dir at each policy: per-round ratios."""
    if publish.empty:
        return pd.DataFrame(columns=["ratio", "replicas", "at", "mode", "median", "min", "max", "n"])
    return pd.concat(
        [
            _ratios(publish, "backend", "nats-sync", "nats", "store"),
            _ratios(publish, "store", "lazyfs", "plain", "backend"),
        ],
        ignore_index=True,
    )


def tables(rows: pd.DataFrame, docs: Sequence[RunDocument]) -> dict[str, pd.DataFrame]:
    if not (rows["experiment"] == NAME).any():
        return {}
    publish = publish_rates(docs)
    return {
        "power_loss": loss_table(rows),
        "publish_cost": publish_table(publish),
        "publish_ratios": cost_table(publish),
    }


def figure(rows: pd.DataFrame, docs: Sequence[RunDocument]) -> Figure | None:
    part = rows[rows["experiment"] == NAME]
    if part.empty:
        return None
    return power_loss_figure(part, publish_rates(docs))


def _writeback_label(writeback_s: float | None) -> str:
    return "never" if writeback_s is None else f"{writeback_s:g}"


def parse_writeback(value: float | str | None) -> float | None:
    """A notebook's writeback value: seconds, or 'never' / None."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"writeback_s={value!r}: expected seconds > 0 or 'never'")
    return seconds


async def _publish_costs(
    ctx: RunContext,
    backend: Backend,
    lazy: NatsServer,
    workdir: Any,
    counts: dict[str, int],
    rounds: int,
    replicas: int,
) -> None:
    """Raw publish rate on the lazy store and on a plain dir with the same fsync policy and replicas, interleaved."""
    sync = backend == "nats-sync"
    nodes = int(getattr(lazy, "size", 1))
    plain: NatsServer = (
        NatsCluster(workdir / "plain-nats", nodes=nodes, sync_always=sync)
        if nodes > 1
        else ProcessNats(workdir / "plain-nats", sync_always=sync)
    )
    with plain:
        for rnd in range(rounds):
            stores: tuple[tuple[Literal["plain", "lazyfs"], str], ...] = (("plain", plain.url), ("lazyfs", lazy.url))
            for store, url in stores:
                for mode in PUBLISH_MODES:
                    rate = await publish_rate(url, mode, counts[mode], replicas=replicas)
                    row = PublishRate(
                        experiment=ctx.experiment,
                        run_id=ctx.run_id,
                        repetition=ctx.repetition,
                        backend=backend,
                        store=store,
                        mode=mode,
                        round=rnd,
                        messages=counts[mode],
                        rate=round(rate, 1),
                        replicas=replicas,
                    )
                    ctx.publish_rates.append(row)


@dataclass(frozen=True)
class PowerLossSetting:
    """One deployment of the power-loss experiment: queue, replicas, writeback, and the fault it takes."""

    backend: Backend
    replicas: int  # 1: one node; 3: three nodes, R3
    writeback_s: float | None  # the default policy's kernel-like writeback (None: never)
    fault: str  # a FaultStep text: a power loss (R1); on R3 of the leader, of every node, or the lagging majority

    @property
    def phase(self) -> str:
        wb = _writeback_label(self.writeback_s) if self.backend in DEFAULT_POLICIES else "-"  # nothing pending
        return f"{self.fault},writeback={wb}"

    def step(self, at_s: float, down_s: float, lag_s: float) -> FaultStep:
        """The fault at `at_s`: down `down_s`, or for the lagging majority its follower cut off `lag_s`."""
        kind = FaultStep.parse(self.fault).kind
        return FaultStep.parse(self.fault, at_s=at_s, down_s=lag_s if kind == LaggingMajority.kind else down_s)


def power_loss_settings(
    backends: Sequence[Backend],
    writebacks: Sequence[float | str | None],
    replicas: Sequence[int],
    cluster_faults: Sequence[str],
    cluster_writebacks: Sequence[float | str | None],
    kafka_cluster_faults: Sequence[str] = (),
) -> list[PowerLossSetting]:
    """The grid, in run order: R1 for every backend and writeback, then R3 for each cluster fault.

    Writebacks apply to the default policies only (`nats-sync` and
    `kafka-flush` have nothing pending); the memory queue has one node and no
    replicas. On R3, JetStream takes `cluster_faults`, Kafka `kafka_cluster_faults`.
    """
    out: list[PowerLossSetting] = []
    for r in replicas:
        if r not in (1, 3):
            raise ValueError(f"replicas={r}: expected 1 (one node) or 3 (three nodes, R3)")
        for backend in backends:
            if backend == "memory" and r > 1:
                continue
            on_r3 = kafka_cluster_faults if backend.startswith("kafka") else cluster_faults
            faults = [PowerLoss.kind] if r == 1 else list(on_r3)
            wbs = writebacks if r == 1 else cluster_writebacks
            settings = [parse_writeback(w) for w in wbs] if backend in DEFAULT_POLICIES else [None]
            for fault in faults:
                FaultStep.parse(fault)  # a typo fails here, not after the first deployments ran
                out.extend(PowerLossSetting(backend, r, wb, fault) for wb in settings)
    return out


def setup_for(setting: PowerLossSetting, p: Params, step: FaultStep) -> Setup:
    """The deployment of one setting: its broker's nodes on lazy stores (the memory queue on none)."""
    broker = setting.backend != "memory"
    return Setup(
        backend=setting.backend,
        workers=p.workers,
        processing_ms=p.processing_ms,
        store="lazyfs" if broker else "disk",
        writeback_s=setting.writeback_s,
        nodes=setting.replicas if broker else None,
        env=_queue_env(setting, p),
        partitionable="partitionable" in step.fault.needs,
    )


def _queue_env(setting: PowerLossSetting, p: Params) -> dict[str, str]:
    """The stream's replicas (a Kafka topic's follow its brokers), and Kafka's small consumer buffer (see Params)."""
    if setting.backend == "memory":
        return {}
    if setting.backend.startswith("kafka"):
        return {**replica_env("kafka", setting.replicas), "KAFKA_PREFETCH": str(p.kafka_prefetch)}
    return replica_env("nats", setting.replicas)


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Power loss mid-load, in a fresh deployment per setting; accounting by id.

    NATS and Kafka run with each node's store on the lazy file system, so
    SIGKILL + `lose` drops what it wrote but never fsynced. Slow workers
    (`processing_ms`) keep a backlog of acknowledged, unprocessed messages at
    the moment of the fault: that backlog is what is at stake. The memory
    queue is the baseline (its power loss is the processor's death).

    R1 (`replicas` 1): the one node loses power. R3 (`replicas` 3, three
    nodes): each of `cluster_faults`, with `cluster_duration_s` of load at
    `cluster_rate` (default `rate`; a leader election takes seconds, and a
    lower rate keeps the drain after it short): `power-loss:leader` (one node),
    `power-loss:queue` (all three at once) and `lagging-majority` (Jepsen's
    scenario; its follower lags `lag_s`); Kafka's from `kafka_cluster_faults`.
    For each NATS policy and replica count, the raw publish rate (one at a time and pipelined) is measured on
    the lazy store and on a plain dir, so the figure shows what durability costs.
    """
    p = params
    counts = {"single": p.publish_single, "pipelined": p.publish_pipelined}
    measured_costs: set[tuple[Backend, int]] = set()
    grid = power_loss_settings(
        p.backends, p.writebacks, p.replicas, p.cluster_faults, p.cluster_writebacks, p.kafka_cluster_faults
    )
    for setting in grid:
        cluster = setting.replicas > 1
        step = setting.step(p.fault_at_s, p.down_s, p.lag_s)
        async with ctx.session(setup_for(setting, p, step)) as session:
            key = (setting.backend, setting.replicas)
            if setting.backend.startswith("nats") and p.publish_rounds > 0 and key not in measured_costs:
                assert session.nats is not None
                measured_costs.add(key)
                await _publish_costs(ctx, setting.backend, session.nats, session.workdir, counts, p.publish_rounds,
                                     setting.replicas)  # fmt: skip
            rec = await session.measure(
                setting.phase,
                rate=(p.cluster_rate or p.rate) if cluster else p.rate,
                duration_s=p.cluster_duration_s if cluster else p.duration_s,
                fault=step,
                drain_timeout_s=45.0 if cluster else 30.0,
            )
            label(session, rec)
    return ctx.frame()


def run_publish_frame(ctx: RunContext) -> pd.DataFrame:
    """This run's raw publish rates as a DataFrame."""
    return publish_frame(ctx.publish_rates)


POWER_LOSS_PARTS = (
    ("recovered", "#2ca02c", "recovered (acked before, processed after)"),
    ("lost_prefix", "#ff9896", "lost-prefix"),
    ("lost_middle", "#d62728", "lost-middle"),
    ("lost_postfix", "#8c564b", "lost-postfix"),
    ("duplicated", "#ffbb78", "duplicated"),
)


def setting_label(backend: str, phase: str, replicas: int = 1) -> str:
    """'JetStream default fsync, writeback never' (R1), with the fault's name on three nodes (R3).

    From a row's backend, its `FAULT,writeback=...` phase and its replicas.
    """
    names = {"memory": "memory queue", "nats": "JetStream\ndefault fsync", "nats-sync": "JetStream\nsync_always",
             "kafka": "Kafka\ndefault flush", "kafka-flush": "Kafka\nflush each message"}  # fmt: skip
    writeback = phase.split("writeback=", 1)[1] if "writeback=" in phase else "-"
    fault = phase.split(",", 1)[0]
    name = names.get(backend, backend)
    if backend in DEFAULT_POLICIES:
        name = f"{name}\nwriteback {writeback}" + ("" if writeback == "never" else " s")
    if replicas > 1:
        name = f"R{replicas}, {plot_name(fault)}\n{name}"
    return name


def power_loss_figure(df: pd.DataFrame, publish: pd.DataFrame) -> Figure:
    """Durability against speed: what a power loss did per setting (left), what each fsync policy costs (right).

    Left: acknowledged messages at stake, as counted by id (sums over
    repetitions): recovered, lost split by send order, duplicated; one node
    (R1) first, then three nodes (R3) per fault. Right: raw JetStream
    publish rate, one at a time and pipelined, on the lazy FS and on a plain
    dir, per replica count (median, min..max bar over rounds and repetitions).
    """
    replicas = df["replicas"].clip(lower=1) if "replicas" in df else pd.Series(1, index=df.index)
    df = df.assign(_r=replicas)
    order = {"memory": 0, "nats": 1, "nats-sync": 2, "kafka": 3, "kafka-flush": 4}

    def rank(group: tuple[int, str, str]) -> tuple[int, tuple[int, int], int, str]:
        r, backend, phase = group
        return r, fault_rank(phase.split(",", 1)[0]), order.get(backend, 9), phase  # simple faults first

    groups = sorted({(int(r), b, p) for r, b, p in zip(df["_r"], df["backend"], df["phase"], strict=True)}, key=rank)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(12.5, 6.5 + 1.1 * len(groups)), 5.4), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    labels = [setting_label(b, p, r) for r, b, p in groups]

    def pick(r: int, b: str, p: str) -> pd.DataFrame:
        return df[(df["_r"] == r) & (df["backend"] == b) & (df["phase"] == p)]

    width = 0.8 / len(POWER_LOSS_PARTS)
    for i, (col, color, name) in enumerate(POWER_LOSS_PARTS):
        values = [int(pick(*g)[col].sum()) for g in groups]
        xs = [j + (i - (len(POWER_LOSS_PARTS) - 1) / 2) * width for j in range(len(groups))]
        bars = left.bar(xs, values, width=width, color=color, label=name)
        left.bar_label(bars, fontsize=6)
    acked = [int(pick(*g)["acknowledged"].sum()) for g in groups]
    left.set_xticks(range(len(groups)), [f"{lab}\n({a} acked)" for lab, a in zip(labels, acked, strict=True)],
                    fontsize=6.5)  # fmt: skip
    r3_from = next((j for j, g in enumerate(groups) if g[0] > 1), None)
    if r3_from is not None and r3_from > 0:
        left.axvline(r3_from - 0.5, color="0.6", lw=0.8, ls="--")
    left.set_xlabel("setting (one node, R1" + (" | three nodes, R3)" if r3_from is not None else ")"))
    left.set_ylabel("messages (sum over repetitions)")
    left.set_title("Power loss mid-load: acknowledged messages by fate", fontsize=9)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.36), ncol=3)
    if publish.empty:
        right.text(0.5, 0.5, "no publish-rate measurements", ha="center", va="center", transform=right.transAxes)
    else:
        reps = sorted(int(r) for r in publish["replicas"].unique())
        present = set(zip(publish["replicas"], publish["backend"], publish["store"], strict=True))
        cases = [(r, b, s) for r in reps for b in ("nats", "nats-sync") for s in ("plain", "lazyfs")
                 if (r, b, s) in present]  # fmt: skip
        modes = ["single", "pipelined"]
        width = 0.8 / len(cases)
        for i, (r, backend, store) in enumerate(cases):
            part = publish[(publish["replicas"] == r) & (publish["backend"] == backend) & (publish["store"] == store)]
            agg = median_range(part, ["mode"], "rate").set_index("mode").reindex(modes)
            xs = [j + (i - (len(cases) - 1) / 2) * width for j in range(len(modes))]
            st = backend_style(backend)
            yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
            prefix = f"R{r} " if len(reps) > 1 else ""
            right.bar(xs, agg["median"], width=width, yerr=yerr, capsize=3, color=st["color"],
                      alpha=(1.0 if store == "plain" else 0.55) * (1.0 if r == reps[0] else 0.7),
                      hatch=("" if store == "plain" else "//") + ("" if r == reps[0] else ".."),
                      edgecolor="black" if r != reps[0] else None, linewidth=0.5,
                      label=f"{prefix}{st['label']}, {'plain dir' if store == 'plain' else 'lazy FS'}")  # fmt: skip
        right.set_xticks(range(len(modes)), ["one at a time", "pipelined (publish_async)"])
        right.set_xlabel("publish mode (raw nats-py, 128 B)")
        right.set_yscale("log")
        right.set_ylabel("acknowledged publishes [msg/s, log scale]")
        right.set_title("What each fsync policy costs", fontsize=9)
        right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name=NAME,
    title="Power loss: what fsync buys, and what it costs",
    params=Params,
    run=run,
    columns=("replicas", "backend", "broker_provider", "phase", "sent", "acknowledged", "processed", "lost",
             "lost_prefix", "lost_middle", "lost_postfix", "duplicated", "recovered", "errors"),
    figures=(FigureSpec("power_loss", lambda rows, _records, docs: figure(rows, docs)),),
    doc_tables=tables,
    claims=power_loss_claims.CLAIMS,
)  # fmt: skip
