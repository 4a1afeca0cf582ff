"""The Cases and Rules pages in a real browser (headless Chromium through Playwright), against a running
``fraudstream serve``: an analyst claims a case, writes a note and gives a verdict; the labels are
stored and the device's label-aware features change; the Rules page shows the rules' hits and
backtests a candidate; a dashboard holding an ingest key is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudstream.storage import open_store
from tests.e2e.test_dashboard import chromium, healthy, settled, wait_until
from tests.e2e.test_demo import free_port

__all__ = ["chromium"]  # the fixture


def _start(args: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "fraudstream", *args], env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: healthy(url) or proc.poll() is not None, f"{args[0]} at {url}", 60)
    finally:
        out.close()
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.fixture
def stack(tmp_path: Path, bundle_path: Path) -> Iterator[dict[str, Any]]:
    """A server whose rules FLAG amounts over 1,000, with an analyst's and an ingest key, and two
    dashboards on loopback: one holding each key."""
    url = f"sqlite:///{tmp_path}/fraud.db"
    with open_store(url) as store:
        store.migrate()
        keys = store.keys
        analyst, ingest = keys.create("ana", "analyst")[1], keys.create("feeder", "ingest")[1]
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: big, when: 'amount > 1000', action: FLAG, reason: big amount}\n")
    env = os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_DATABASE_URL": url,
        "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_RULES_PATH": str(rules),
    }
    env.pop("FRAUD_API_KEYS", None)
    api = f"http://127.0.0.1:{free_port()}"
    procs = [_start(["serve", "--port", api.rsplit(":", 1)[1]], env, f"{api}/health", tmp_path / "serve.log")]
    try:
        boards = {}
        for name, key in (("analyst", analyst), ("ingest", ingest)):
            port = free_port()
            args = ["dashboard", "--port", str(port), "--api-url", api, "--api-key", key]
            board = f"http://127.0.0.1:{port}"
            procs.append(_start(args, env, f"{board}/_stcore/health", tmp_path / f"{name}.log"))
            boards[f"{name}_board"] = board
        yield {"api": api, "url": url, "analyst": analyst, "ingest": ingest, **boards}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(30)


@pytest.mark.slow
def test_an_analyst_works_a_case_in_the_browser_and_an_ingest_key_is_refused(
    chromium: Path, stack: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    now = datetime.now(UTC)
    with httpx.Client(base_url=stack["api"], headers={"X-API-Key": stack["ingest"]}) as sender:
        for i, amount in enumerate((1500.0, 2200.0)):
            body = {
                "transaction_id": f"big-{i}",
                "timestamp": (now - timedelta(minutes=10 - i)).isoformat(),
                "customer_id": "C-X",
                "device_id": "dev-x",
                "amount": amount,
            }
            answer = sender.post("/v1/score", json=body)
            assert answer.status_code == 200 and answer.json()["decision"] == "FLAG", answer.text

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(stack["analyst_board"])
            page.get_by_text("Cases", exact=True).click()
            page.locator(".st-key-case_queue").wait_for(timeout=30_000)
            assert page.get_by_text("signed in as").first.is_visible()
            why = page.locator(".st-key-case_explanations")
            expect(why.locator("table")).to_have_count(2, timeout=30_000)  # one per decision
            shown = why.inner_text()
            assert "big-1" in shown and "big-0" in shown and "raises risk" in shown
            stored = httpx.get(
                f"{stack['api']}/v1/transactions/big-1", headers={"X-API-Key": stack["analyst"]}
            )
            sentence = stored.json()["decision"]["explanation"]["raises"][0]["sentence"]
            assert sentence in shown  # the stored explanation's words, as the API gives them
            with page.expect_download() as downloading:
                page.locator(".st-key-case_report_html button").click()
            report = Path(downloading.value.path()).read_text(encoding="utf-8")
            assert report.startswith("<!DOCTYPE html>") and "big-1" in report
            page.locator(".st-key-case_claim button").click()
            page.get_by_text("claimed case").wait_for(timeout=15_000)
            settled(page)
            assert page.get_by_text("in review: ana (1)").is_visible()
            page.locator(".st-key-case_note_text textarea").fill("two large payments from one device")
            page.locator(".st-key-case_note_add button").click()
            page.get_by_text("note added").wait_for(timeout=15_000)
            settled(page)
            page.locator(".st-key-case_verdict_fraud button").click()
            page.get_by_text("No open cases").wait_for(timeout=15_000)

            page.get_by_text("Rules", exact=True).click()
            hits = page.locator(".st-key-rules_hits")
            hits.wait_for(timeout=30_000)
            assert "big" in hits.inner_text()
            huge = "rules:\n  - {name: huge, when: 'amount > 2000', action: BLOCK, reason: huge}\n"
            page.locator(".st-key-rules_candidate textarea").fill(huge)
            page.locator(".st-key-rules_backtest button").click()
            report = page.locator(".st-key-rules_candidate_report")
            report.wait_for(timeout=30_000)
            assert "huge" in report.inner_text()

            refused = browser.new_page()
            refused.goto(stack["ingest_board"])
            refused.get_by_text("Cases", exact=True).click()
            refused.get_by_text("refused the key").first.wait_for(timeout=30_000)
        finally:
            browser.close()

    with httpx.Client(base_url=stack["api"], headers={"X-API-Key": stack["analyst"]}) as analyst:
        labels = analyst.get("/v1/labels/big-0").json()
        assert labels["is_fraud"] is True and labels["labels"][0]["source"] == "case"
        audit = analyst.get("/v1/audit").json()
        assert [(e["actor"], e["action"]) for e in audit] == [
            ("ana", "verdict"),
            ("ana", "note"),
            ("ana", "claim"),
        ]
    with httpx.Client(base_url=stack["api"], headers={"X-API-Key": stack["ingest"]}) as sender:
        later = {
            "transaction_id": "after",
            "timestamp": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
            "customer_id": "C-Y",
            "device_id": "dev-x",
            "amount": 20.0,
        }
        assert sender.post("/v1/score", json=later).status_code == 200
    with open_store(stack["url"]) as store:
        stored = store.decisions.get_many(["big-1", "after"])
    assert stored["big-1"].features["device_known_fraud_30d"] in (0.0, None)
    assert stored["after"].features["device_known_fraud_30d"] == 2.0
