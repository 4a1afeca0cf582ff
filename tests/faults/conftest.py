"""The fault suite runs under ``make test-faults`` (``FRAUD_TEST_FAULTS=1``), and is skipped elsewhere: it
takes minutes and servers of its own. Its table is printed at the end of the run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPORT: list[dict[str, Any]] = []
"""One row per fault run, as :mod:`tests.faults.test_fault_suite` measured it."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FRAUD_TEST_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="the fault suite runs under `make test-faults`")
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    columns = ["fault", "lost", "state missing", "state ≠ storage", "vectors ≠ offline", "share", "groups"]
    terminalreporter.section("fault suite")
    terminalreporter.write_line(" | ".join(columns))
    for row in REPORT:
        cells = [f"{row['share']:.3%}" if c == "share" else str(row[c]) for c in columns]
        terminalreporter.write_line(" | ".join(cells))
    target = os.environ.get("FRAUD_FAULTS_REPORT")
    if target:
        Path(target).write_text(json.dumps(REPORT, indent=2, ensure_ascii=False) + "\n")
