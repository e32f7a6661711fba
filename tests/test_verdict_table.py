"""The report's one verdict table: every claim of every chapter, whatever queues the batch ran.

In process, on the saved quick batch (tests/data/quick-batch) with its 01_latency
run document given Kafka phases as well (copies of its JetStream rows as
`kafka` and `kafka-flush`, the schema's backends), and a claim the chapter
modules do not know: the table takes both without an edit. Under a second.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import orjson
import pandas as pd
import pytest

from experiments.lab.registry import EXPERIMENTS
from experiments.results import report, verdicts
from experiments.results.chapters import all_claims
from experiments.results.claims import HYPOTHESIS, Claim, Evidence, Finding, decide
from experiments.results.schema import ResultRow
from tests.test_claims import SAVED


def _with_kafka(tmp_path: Path) -> Path:
    batch = tmp_path / "batch"
    shutil.copytree(SAVED, batch)
    path = next((batch / "runs").glob("01_latency--*.json"))
    doc = orjson.loads(path.read_bytes())
    nats = [r for r in doc["results"] if r["row"]["backend"] == "nats"]
    for backend in ("kafka", "kafka-flush"):
        for rec in nats:
            copy = orjson.loads(orjson.dumps(rec))
            copy["row"].update(backend=backend, broker_provider="process", phase=f"{rec['row']['phase']}-{backend}")
            doc["results"].append(copy)
    path.write_bytes(orjson.dumps(doc))
    return batch


def _kafka_no_loss(ev: Evidence) -> Finding:
    part = ev.rows[ev.rows["backend"].str.startswith("kafka")]
    lost, acked = int(part["lost"].sum()), int(part["acknowledged"].sum())
    return decide(lost == 0, f"kafka: lost {lost} of {acked} acknowledged", lost=lost, acknowledged=acked)


NEW_CLAIM = Claim("latency.kafka-no-loss-test", "01_latency", "Kafka loses no acknowledged message.", HYPOTHESIS,
                  _kafka_no_loss)  # fmt: skip


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr style=.*?</tr>", html)


def test_one_table_has_every_claim_with_evidence_guard_and_the_queues_run(tmp_path: Path) -> None:
    batch = _with_kafka(tmp_path)
    docs = verdicts.batch_docs(batch)
    assert {r.row.backend for d in docs for r in d.results} >= {"memory", "nats", "kafka", "kafka-flush"}
    ResultRow.model_validate(docs[0].results[0].row.model_dump())  # still schema-valid
    found = verdicts.of_docs(docs, [*all_claims(), NEW_CLAIM])
    table = verdicts.html(found, rows=verdicts.rows_of(docs))
    rows = _rows(table)
    assert len(rows) == len(all_claims()) + 1
    for v in found:  # each claim once, with its verdict mark, evidence and guard
        (row,) = [r for r in rows if f"<code>{v.claim.id}</code>" in r]
        assert verdicts.MARKS[v.outcome] in row
        assert html.escape(v.finding.evidence) in row
        if v.outcome == "inconclusive":
            assert v.finding.guard
            assert f"<em>{html.escape(v.finding.guard)}</em>" in row
    latency_rows = [r for r in rows if "<td>01_latency</td>" in r]
    assert latency_rows
    assert all("<td>memory, nats, kafka, kafka-flush</td>" in r for r in latency_rows)
    assert all("<td>memory, nats</td>" in r for r in rows if "<td>02_throughput</td>" in r)
    (new,) = [r for r in rows if NEW_CLAIM.id in r]
    assert "✔ holds" in new
    assert "kafka: lost 0 of" in new
    header = re.search(r"<tr><th>.*?</tr>", table)
    assert header is not None
    columns = ["verdict", "chapter", "claim", "statement and source", "evidence (this run)", "guard", "queues run"]
    assert re.findall(r"<th>(.*?)</th>", header.group(0)) == columns


def test_the_report_opens_with_that_table_before_any_other(tmp_path: Path) -> None:
    batch = _with_kafka(tmp_path)
    docs = verdicts.batch_docs(batch)
    rows = report.load_rows(docs)
    built = report.Report(
        batch, rows, verdicts=verdicts.of_docs(docs, [c for e in EXPERIMENTS.values() for c in e.claims])
    )
    built.titles = {e.name: e.title for e in EXPERIMENTS.values()}
    page = report._html(batch.name, built, pd.DataFrame(), report.runs_table(docs))
    assert page.index("<h2>Verdicts</h2>") < page.index("<table")
    assert page.index("<table class='verdicts'>") < page.index("<h2>Headlines</h2>") < page.index("<h2>Tables</h2>")
    assert len(_rows(page)) == sum(len(e.claims) for e in EXPERIMENTS.values())
    assert "memory, nats, kafka, kafka-flush" in page


def test_diplom_check_names_the_queues_each_chapter_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = _with_kafka(tmp_path)
    assert verdicts.check_main([str(batch)]) == 0
    out = capsys.readouterr().out
    assert "(01_latency; queues run: memory, nats, kafka, kafka-flush)" in out
