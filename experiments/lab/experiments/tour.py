"""00 tour: the API by hand on each queue (ingest, status, stats), then one short measured phase.

Not a measurement to compare: it shows what the services answer, so a
student sees the system before the experiments drive it.
"""

from __future__ import annotations

import json

import pandas as pd

from experiments.lab.context import RunContext
from experiments.lab.experiment import Experiment, ExperimentParams
from experiments.lab.setup import Setup
from experiments.results.chapters import tour as tour_claims
from experiments.results.schema import Backend


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats")  # the tour switches QUEUE_TYPE between these
    rate: float = 50.0  # msg/s for the short measured phase at the end
    duration_s: float = 1.0


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Per backend: POST one message, GET the status, one measured phase, GET the processor's stats (printed)."""
    for backend in params.backends:
        async with ctx.session(Setup(backend=backend)) as s:
            print(f"== QUEUE_TYPE={s.stack.config.queue}  (NATS: {s.broker_provider})")
            status, answer = await s.post({"source": "tour", "payload": {"hello": backend}})
            print("POST /api/v1/ingest ->", status, json.dumps(answer))
            print("GET /api/v1/status  ->", json.dumps(await s.get(f"{s.gateway_url}/api/v1/status")))
            await s.measure("tour", rate=params.rate, duration_s=params.duration_s)
            stats = await s.get(f"{s.stack.processor_url}/stats")
            print("GET /stats          ->", json.dumps({"queue": stats["queue"], "pool": stats["pool"]}, indent=1))
    return ctx.frame()


EXPERIMENT = Experiment(
    name="00_tour",
    title="Tour",
    params=Params,
    run=run,
    columns=("backend", "broker_provider", "offered_rate", "achieved_rate", "sent", "acknowledged", "processed",
             "lost", "e2e_p50_ms", "e2e_p99_ms"),
    claims=tour_claims.CLAIMS,
)  # fmt: skip
