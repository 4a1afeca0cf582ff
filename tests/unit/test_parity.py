"""Online/offline feature parity: decisions made in event-time order match the offline engine; one
decided late leaves the later decisions of its keys on another history, and the check says which."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.api.app import create_app
from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.datasets.simulate import GROUND_TRUTH
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import iter_records
from fraudstream.events.transaction import Transaction
from fraudstream.runtime import Services, open_services
from fraudstream.training.parity import ROW, check_parity


@pytest.fixture(scope="module")
def traffic(small_frame: pd.DataFrame) -> list[Transaction]:
    """The first 400 generated transactions in event-time order, without their ground truth."""
    frame = small_frame.sort_values("timestamp", kind="stable").head(400)
    return [
        Transaction.model_validate({k: v for k, v in r.items() if k not in GROUND_TRUTH})
        for r in iter_records(frame)
    ]


@pytest.fixture
def services(tmp_path: Path, bundle_path: Path) -> Iterator[Services]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/parity.db", model_path=bundle_path)
    running = open_services(settings)
    try:
        yield running
    finally:
        running.close()


def decide(services: Services, txs: list[Transaction], size: int = 50) -> None:
    for lo in range(0, len(txs), size):
        chunk = txs[lo : lo + size]
        services.decider.decide(TransactionBatch.from_transactions(chunk), chunk)


def check(services: Services, txs: list[Transaction]) -> Any:
    feature_set = services.scorer.engine.feature_set
    start, end = txs[0].timestamp, max(t.timestamp for t in txs)
    return check_parity(services.store.history, feature_set, start, end + pd.Timedelta(seconds=1))


def test_decisions_made_in_order_match_the_offline_features(
    services: Services, traffic: list[Transaction]
) -> None:
    decide(services, traffic)
    parity = check(services, traffic)
    assert (parity.decisions, parity.compared, parity.differing) == (400, 400, 0)
    assert set(parity.groups) == {"customer", "device", "ip", "merchant", ROW}
    assert not any(parity.groups.values()) and parity.features == {}


def test_a_transaction_decided_after_later_ones_shows_in_its_keys_groups(
    services: Services, traffic: list[Transaction]
) -> None:
    # the merchant's first transaction is redelivered after everything else: every later transaction
    # of that merchant was decided without it
    late = next(i for i, t in enumerate(traffic) if sum(u.merchant_id == t.merchant_id for u in traffic) > 3)
    merchant = traffic[late].merchant_id
    decide(services, traffic[:late] + traffic[late + 1 :])
    decide(services, [traffic[late]])
    parity = check(services, traffic)
    later = sum(t.merchant_id == merchant for t in traffic[late + 1 :])
    assert parity.compared == 400
    assert parity.groups["merchant"] == later
    assert 0 < parity.differing <= parity.compared and parity.groups[ROW] == 0
    assert any(name.startswith("merchant_") for name in parity.features)


def test_the_command_reports_the_check_and_fails_past_the_share_it_is_given(
    tmp_path: Path, services: Services, traffic: list[Transaction], monkeypatch: pytest.MonkeyPatch
) -> None:
    decide(services, traffic[1:])
    decide(services, traffic[:1])
    monkeypatch.setenv("FRAUD_DATABASE_URL", f"sqlite:///{tmp_path}/parity.db")
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(services.settings.model_path))
    ok = CliRunner().invoke(cli, ["parity", "--since", "30d", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output[ok.output.index("{") :])
    assert report["compared"] == 400 and report["differing"] > 0
    failed = CliRunner().invoke(cli, ["parity", "--since", "30d", "--max-share", "0", "--no-record"])
    assert failed.exit_code == 3, failed.output
    with TestClient(create_app(services.settings)) as client:  # the stored check, on /metrics
        text = client.get("/metrics").text
    assert "fraudstream_feature_parity_compared{" in text and "} 400.0" in text
    differing = report["groups"]["merchant"]
    assert any(
        line.startswith("fraudstream_feature_parity_group_differing{")
        and 'group="merchant"' in line
        and line.endswith(f" {float(differing)}")
        for line in text.splitlines()
    )
