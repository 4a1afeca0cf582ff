"""An aggregate without a retrain, over HTTP: while traffic flows into a running server, an admin saves a
rules version declaring a new aggregate and a shadow rule over it; without a restart, the decisions that
follow record the shadow rule's hits and the aggregate's values, which equal the backfill's, and the
backtest of the version computes them over the stored history the same way."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from typer.testing import CliRunner

from fraudstream.api import create_app
from fraudstream.cli import app
from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.runtime import open_services
from tests.e2e.apitools import NOW
from tests.serving import uvicorn_thread
from tests.waiting import wait_for

VERSION = """
aggregates:
  fields: {extra.card_bin: text, extra.billing_country: text}
  features:
    - key: extra.card_bin
      name: bin
      aggregates:
        - stats: [count]
          windows: [1h]
          where: country != extra.billing_country
          name: bin_foreign_count_1h
rules:
  - name: bin_foreign_burst
    when: bin_foreign_count_1h >= 12
    action: FLAG
    shadow: true
    reason: many payments on one card BIN from a country other than the billing one within the hour
"""


class Traffic:
    """Payments posted one after another to ``POST /v1/score``, 40 seconds of event time apart."""

    def __init__(self, base: str, key: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30.0)
        self.sent: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.failed: list[str] = []
        self.rng = np.random.default_rng(5)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def body(self, i: int) -> dict[str, Any]:
        countries = ["FR", "FR", "DE", "GB"]
        return {
            "transaction_id": f"agg-{i:05d}",
            "timestamp": (NOW - timedelta(hours=6) + timedelta(seconds=40 * i)).isoformat(),
            "customer_id": f"C-{self.rng.integers(40)}",
            "amount": float(np.round(self.rng.lognormal(3.5, 1.0), 2)),
            "country": countries[int(self.rng.integers(4))],
            "extra": {"card_bin": f"4970{self.rng.integers(3)}", "billing_country": "FR"},
        }

    def _run(self) -> None:
        while not self.stop.is_set():
            body = self.body(len(self.sent))
            try:
                answer = self.client.post("/v1/score", json=body)
            except httpx.HTTPError as error:
                self.failed.append(str(error))
                return
            if answer.status_code != 200:
                self.failed.append(answer.text)
                return
            self.sent.append(body)

    def until(self, count: int) -> None:
        wait_for(lambda: len(self.sent) >= count or bool(self.failed), f"{count} payments decided", 120)
        assert not self.failed, self.failed


def computed(client: httpx.Client) -> bool:
    """Whether the server computes the version's aggregate now (asked five times a second)."""
    time.sleep(0.2)
    return bool(client.get("/v1/rules").json()["aggregates"]["names"] == ["bin_foreign_count_1h"])


def scenario(traffic: Traffic) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], int, int]:
    """An admin saves a bad version (refused), then the version, while payments go on: the payments
    sent, their stored decisions, the version's backtest, and how many were answered before the version was
    saved and when its aggregate was seen computed."""
    traffic.until(60)
    typo = VERSION.replace("windows: [1h]", "windows: [soon]")
    refused = traffic.client.put("/v1/rules", json={"rules": typo})
    assert refused.status_code == 422 and refused.json()["detail"][0]["msg"] == (
        "candidate: aggregates: features[0] (key extra.card_bin).aggregates[0].windows[0]: "
        "'soon' is not a duration: write e.g. 90s, 30m, 1h, 7d or 2w"
    )
    saved_after = len(traffic.sent)  # every payment answered before the save was decided by version 1
    saved = traffic.client.put("/v1/rules", json={"rules": VERSION})
    assert saved.status_code == 200 and saved.json()["version"] == "2", saved.text
    wait_for(lambda: computed(traffic.client), "the version's aggregate to be computed online", 120)
    live_from = len(traffic.sent)
    traffic.until(live_from + 150)
    traffic.stop.set()
    traffic.thread.join(30)
    assert not traffic.failed, traffic.failed
    sent = list(traffic.sent)
    stored = [traffic.client.get(f"/v1/transactions/{b['transaction_id']}").json()["decision"] for b in sent]
    backtest = traffic.client.post("/v1/rules/backtest", json={"rules": VERSION, "since": "2d"}).json()
    return sent, stored, backtest, saved_after, live_from


def test_an_aggregate_and_a_shadow_rule_over_it_go_live_without_a_restart(
    tmp_path: Path, bundle_path: Path
) -> None:
    seed = tmp_path / "rules.yaml"
    seed.write_text("rules: []\n", encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db", model_path=bundle_path, rules_path=seed,
        rules_source="database", api_keys="", rate_limits=False, max_wait=0.005,
    )  # fmt: skip
    services = open_services(settings)
    admin = services.store.keys.create("lead", "admin")[1]
    try:
        with uvicorn_thread(create_app(settings, services)) as base:
            traffic = Traffic(base, admin)
            traffic.thread.start()
            try:
                sent, stored, backtest, saved_after, live_from = scenario(traffic)
            finally:
                traffic.stop.set()
                traffic.thread.join(30)
                traffic.client.close()
    finally:
        services.close()

    versions = [d["rules_version"] for d in stored]
    first = versions.index("2")  # one version a decision, the new one from its swap on
    assert set(versions[:first]) == {"1"} and set(versions[first:]) == {"2"}
    assert saved_after <= first <= live_from
    assert all(d["aggregates"] is None for d in stored[:first])

    rules = parse_rules(yaml.safe_load(VERSION), default_known_names(services.scorer.engine.feature_set))
    assert rules.aggregates is not None  # the backfill: every payment sent, in order, by the offline path
    batch = TransactionBatch.from_transactions([Transaction.model_validate(b) for b in sent])
    backfill = rules.aggregates.engine.compute(batch)[:, 0]
    seen = [d["aggregates"]["bin_foreign_count_1h"] for d in stored[first:]]
    assert seen == backfill[first:].tolist()
    hits = ["shadow:bin_foreign_burst" in d["rules"] for d in stored[first:]]
    assert hits == (backfill[first:] >= 12).tolist() and 0 < sum(hits) < len(hits)
    assert all("bin_foreign_burst" not in d["rules"] for d in stored)  # in shadow: it acts on nothing

    (watched,) = backtest["rules"]
    assert (watched["name"], watched["shadow"]) == ("bin_foreign_burst", True)
    assert watched["hits"] == int((backfill >= 12).sum())  # every stored payment, before the save too
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(VERSION, encoding="utf-8")
    env = {"FRAUD_DATABASE_URL": settings.db_url, "FRAUD_MODEL_PATH": str(bundle_path)}
    done = CliRunner().invoke(app, ["rules", "backtest", str(candidate), "--since", "2d", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["rules"] == backtest["rules"]
