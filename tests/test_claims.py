"""Claims and verdicts on a saved quick batch (real run documents of `make main-quick`), and a planted contradiction.

In process, no servers: about 2 s. `tests/data/quick-batch/runs/` is the raw
output of one `bash scripts/main.sh --quick` on a busy 2-core machine (most
latency points client-bound there: the guards say so). The notebooks test
(`test_notebooks.py`) evaluates the same claims on a batch it runs itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pandas as pd
import pytest

from experiments.lab.registry import EXPERIMENTS
from experiments.results import verdicts
from experiments.results.chapters import CLAIMS, all_claims, claim
from experiments.results.claims import MIN_TAIL_SAMPLES, client_bound, too_few_samples

SAVED = Path(__file__).resolve().parent / "data" / "quick-batch"

# What the quick profile decides (the rest it leaves inconclusive, with a guard): one place, used here and by
# test_notebooks.py on a fresh batch.
QUICK_MUST_HOLD = (
    "tour.transparent",
    "latency.no-loss",
    "throughput.no-loss",
    "durability.nats-keeps-acknowledged",
    "durability.memory-kill-loses-backlog",
    "scaling.no-loss",
    "cluster.no-loss",
    "cluster.failover-loses-nothing",
    "power.default-loses",
    "power.sync-always-keeps",
    "power.sync-always-costs",
    "migration.planned-keeps",
    "migration.naive-costs",
    "migration.every-request-answered",
    "footprint.no-loss",
    "footprint.nats-on-disk",
    "footprint.memory-in-rss",
    "footprint.full-queue-refuses",
)

# Speed hypotheses compare medians of 1-1.5 s phases: on a CI machine that runs other jobs a fresh quick
# batch can land either side of them (one CI run: JetStream's e2e p50 1.06 ms above memory's against a
# < 1 ms claim, its CPU per message 805 vs 810 µs; another, on a machine at load 13 on 2 cores: memory's
# e2e p50 3.68x apart over two repetitions against a 3x claim). test_notebooks.py does not hold a fresh
# quick batch to them; the full batch decides them.
QUICK_SPEED_CLAIMS = frozenset(
    {
        "latency.repeatable",
        "latency.nats-p50-overhead",
        "latency.nats-p99-tail",
        "throughput.nats-costs-cpu",
        "throughput.queue-not-bottleneck",
        "cluster.r3-costs-latency",
    }
)


def test_every_experiment_has_claims_with_a_source_and_unique_ids() -> None:
    ids = [c.id for c in all_claims()]
    assert len(ids) == len(set(ids))
    assert set(CLAIMS) == set(EXPERIMENTS)
    for name, entry in EXPERIMENTS.items():  # each experiment's module carries its claims
        assert entry.claims == CLAIMS[name], name
    for c in all_claims():
        assert c.statement, c.id
        assert c.causes, c.id
        assert c.source.kind == "hypothesis" or (c.source.quote and c.source.link), c.id
        assert c.id.split(".")[0] in {"tour", "latency", "throughput", "durability", "scaling", "cluster",
                                      "power", "migration", "footprint"}  # fmt: skip


def test_the_saved_quick_batch_contradicts_nothing_and_decides_the_quick_claims() -> None:
    found = {v.claim.id: v for v in verdicts.of_batch(SAVED)}
    assert [i for i, v in found.items() if v.outcome == "contradicted"] == []
    assert {i: found[i].outcome for i in QUICK_MUST_HOLD} == dict.fromkeys(QUICK_MUST_HOLD, "holds")
    for v in found.values():
        assert v.finding.evidence
        assert (v.outcome == "inconclusive") == bool(v.finding.guard), v.claim.id


def _plant(tmp_path: Path, notebook: str, edit: dict[str, int], where: dict[str, str]) -> Path:
    batch = tmp_path / "batch"
    shutil.copytree(SAVED, batch)
    path = next((batch / "runs").glob(f"{notebook}--*.json"))
    doc = orjson.loads(path.read_bytes())
    hit = 0
    for rec in doc["results"]:
        if all(str(rec["row"][k]).startswith(v) for k, v in where.items()):
            for k, delta in edit.items():
                rec["row"][k] += delta
            hit += 1
    assert hit
    path.write_bytes(orjson.dumps(doc))
    return batch


def test_a_planted_loss_turns_red_names_likely_causes_and_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run document edited so JetStream lost one acknowledged message (one fewer processed)."""
    batch = _plant(tmp_path, "03_durability", {"lost": 1, "processed": -1}, {"backend": "nats"})
    found = {v.claim.id: v for v in verdicts.of_batch(batch)}
    red = found["durability.nats-keeps-acknowledged"]
    assert red.outcome == "contradicted"
    assert "lost 1 of 371" in red.finding.evidence
    assert red.causes()
    assert red.causes() == claim("durability.nats-keeps-acknowledged").causes
    assert [i for i, v in found.items() if v.outcome == "contradicted"] == [red.claim.id]

    assert verdicts.check_main([str(batch)]) == 1
    out = capsys.readouterr().out
    assert "1 contradicted" in out
    assert "✘ CONTRADICTED   durability.nats-keeps-acknowledged" in out
    assert "likely cause: a worker acked before the work was recorded" in out
    assert verdicts.check_main([str(SAVED)]) == 0
    html = verdicts.html(verdicts.of_batch(batch))
    assert html.index("CONTRADICTED") < html.index("holds")  # red rows first
    assert "#f8d0d0" in html


def test_guard_nothing_at_stake_makes_a_kept_backlog_inconclusive(tmp_path: Path) -> None:
    """sync_always 'lost nothing' means nothing when nothing acknowledged was waiting at the power loss."""
    batch = _plant(tmp_path, "06_power_loss", {"recovered": -219}, {"backend": "nats-sync"})
    v = {v.claim.id: v for v in verdicts.of_batch(batch)}["power.sync-always-keeps"]
    assert v.outcome == "inconclusive"
    assert v.finding.guard.startswith("nothing at stake")


def test_guard_too_few_samples_for_the_percentile_quoted() -> None:
    assert too_few_samples(600, 0.999)  # p99.9 of 600 samples is the maximum
    assert too_few_samples(5000, 0.999) is None
    assert too_few_samples(300, 0.99)
    assert too_few_samples(100 * MIN_TAIL_SAMPLES, 0.99) is None
    assert too_few_samples(10, 0.5) is None


def test_guard_client_bound_points_decide_nothing() -> None:
    rows = pd.DataFrame({"client_bound": [False, True, None]})
    assert client_bound(rows) == "client-bound: 1 of 3 phases had the load generator or machine saturated"
    assert client_bound(rows.iloc[[0, 2]]) is None
    # the saved batch's latency points were client-bound: the p50 claim says so instead of holding or failing
    v = {v.claim.id: v for v in verdicts.of_batch(SAVED)}["latency.nats-p50-overhead"]
    assert v.outcome == "inconclusive"
    assert v.finding.guard.startswith("client-bound")


def test_an_experiment_not_run_is_inconclusive_not_holds() -> None:
    v = {v.claim.id: v for v in verdicts.of_batch(SAVED)}["power.r3-one-node-keeps"]  # quick runs R1 only
    assert (v.outcome, v.finding.guard) == ("inconclusive", "not run")


def _footprint_rows(store_mib_full: float) -> pd.DataFrame:
    """Two 08 rows of Kafka, empty and holding 100,000 x 128 B (12.2 MiB), the log dir as given."""
    base = {"experiment": "08_footprint", "backend": "kafka", "payload_bytes": 128, "queue_size": 0, "lost": 0}
    return pd.DataFrame([
        {**base, "sent": 0, "backlog": 0, "store_mib": 0.1, "processor_rss_mib": 90.0},
        {**base, "sent": 100_000, "backlog": 100_000, "store_mib": store_mib_full, "processor_rss_mib": 91.0},
    ])  # fmt: skip


def test_kafka_on_disk_holds_when_the_log_holds_the_payload_and_is_contradicted_when_it_does_not() -> None:
    c = claim("footprint.kafka-on-disk")
    assert c.source.link.startswith("https://kafka.apache.org/")
    assert c.evaluate(_footprint_rows(14.0)).outcome == "holds"
    assert c.evaluate(_footprint_rows(2.0)).outcome == "contradicted"
    assert c.evaluate(_footprint_rows(14.0).assign(backend="nats")).finding.guard == "not run"
