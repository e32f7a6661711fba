"""Wall time per test file (setup + call + teardown), printed at the end and kept in .pytest-reports/.

`--durations` names the slowest single steps; what CI's budget needs is where
the half hour goes, file by file (a module of many 20-second tests never shows
up there). Registered as a plugin, so it sees tests/ and testcontainers_tests/.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

SHOWN = 15


class FileDurations:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.tests: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::")[0]
        self.seconds[path] += report.duration
        if report.when == "call":
            self.tests[path] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.seconds:
            return
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        total = sum(self.seconds.values())
        lines = [f"{s:8.1f} s  {s / total:6.1%}  {self.tests[p]:4d} tests  {p}" for p, s in ranked]
        terminalreporter.section(f"wall time per test file (total {total:.0f} s)")
        for line in lines[:SHOWN]:
            terminalreporter.write_line(line)
        out = Path(os.environ.get("PYTEST_REPORT_DIR", ".pytest-reports"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "durations-by-file.txt").write_text("\n".join(lines) + "\n")
