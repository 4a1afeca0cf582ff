"""The dashboard in a real browser: ``fraudstream demo`` (API + worker + simulator + dashboard) on
loopback, driven by Debian's headless Chromium through Playwright.

It checks what a user would: the page loads, its figures move while traffic flows, and a click on
"Mark as fraud" reaches the API. The API requires a key, so the key's way to the dashboard is covered
too; after the demo exits, nothing listens on the dashboard's port any more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from fraudstream.dashboard import charts
from fraudstream.dashboard.client import ApiClient, ApiUnreachable
from fraudstream.datasets.io import write_frame
from tests.e2e.test_demo import free_port

CHROMIUM = Path("/usr/bin/chromium")
KEY = "dashboard-test-key"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: apt-get install chromium (browsers are not downloaded)"
        if os.environ.get("FRAUD_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def wait_until(condition: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.25)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def demo(tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The demo with its dashboard on free ports; stopped with Ctrl-C (SIGINT) afterwards."""
    data = tmp_path / "data"
    data.mkdir()
    write_frame(small_frame, data / "transactions.parquet")
    shutil.copy(bundle_path, data / "model.fsb")
    api_port, dash_port = free_port(), free_port()
    env = os.environ | {"FRAUD_DATA_DIR": str(data), "FRAUD_API_KEYS": KEY, "COLUMNS": "200"}
    command = [sys.executable, "-m", "fraudstream", "demo", "--duration", "120", "--rate", "40"]
    proc = subprocess.Popen(
        [*command, "--port", str(api_port), "--dashboard-port", str(dash_port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    stack = {
        "api": f"http://127.0.0.1:{api_port}",
        "dashboard": f"http://127.0.0.1:{dash_port}",
        "lines": lines,
        "data": data,
    }
    try:
        wait_until(
            lambda: any("streaming" in line for line in lines) or proc.poll() is not None, "the demo", 60
        )
        assert proc.poll() is None, "".join(lines)
        output = "".join(lines)
        assert f"dashboard  http://127.0.0.1:{dash_port}" in output, output
        wait_until(lambda: healthy(f"{stack['dashboard']}/_stcore/health"), "the dashboard", 30)
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        reader.join(5)
        assert code == 0, "".join(lines)
        assert "demo summary" in "".join(lines)
        assert not listening(dash_port), "the dashboard outlived the demo"
        assert not listening(api_port)


def metric(page: Any, label: str) -> int | None:
    """The integer shown by the ``st.metric`` labelled ``label``, or None while it is not drawn."""
    values = page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")
    if values.count() == 0:
        return None
    text = values.first.inner_text().replace(",", "").strip()
    return int(text) if text.isdigit() else None


@pytest.mark.slow
def test_dashboard_shows_live_figures_and_labels_reach_the_api(chromium: Path, demo: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    from fraudstream.storage import open_store

    stuck = {
        "transaction_id": "stuck-1",
        "timestamp": time.time() - 60,
        "customer_id": "C-stuck",
        "amount": 3.0,
    }
    with open_store(f"sqlite:///{demo['data']}/demo.db") as store:  # a worker could not score it
        store.dead_letters.add([("transactions", json.dumps(stuck), "unscoreable: ValueError: test")])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(demo["dashboard"])
            first = wait_until(lambda: metric(page, "Transactions"), "the Transactions figure", 30)
            assert page.get_by_text("fraudstream", exact=True).first.is_visible()
            assert page.get_by_text(f"API: {demo['api']}").is_visible()
            wait_until(lambda: (metric(page, "Transactions") or 0) > first, "the figures to move", 20)
            assert page.locator(".st-key-feed").get_by_text("Live feed: FLAG, BLOCK").is_visible()

            fraud_button = page.locator(".st-key-label_fraud button")

            def reviewable() -> bool:
                if fraud_button.count():
                    return True
                page.locator(".st-key-review_refresh button").click()
                time.sleep(1.0)
                return False

            wait_until(reviewable, "a FLAG or BLOCK decision to review", 30)
            fraud_button.click()
            result = page.locator(".st-key-label_result")
            result.wait_for(timeout=15_000)
            match = re.search(r"Labelled (\S+) as fraud \(customer (\S+)\)", result.inner_text())
            assert match, result.inner_text()

            page.get_by_text("Dead letters (1 newest)").click()
            panel = page.locator(".st-key-dead_letters")
            reason = panel.get_by_text("unscoreable: ValueError: test")  # a cell of the table's canvas
            reason.wait_for(state="attached", timeout=15_000)
            panel.locator(".st-key-requeue button").click()
            panel.get_by_text("Requeued 1 dead letter", exact=True).wait_for(timeout=15_000)
            panel.get_by_text("none: every message so far was decided").wait_for(timeout=15_000)
            assert not panel.get_by_text("unscoreable: ValueError: test").count()  # the table is redrawn
        finally:
            browser.close()

    transaction_id, customer_id = match.groups()
    headers = {"X-API-Key": KEY}
    profile = httpx.get(f"{demo['api']}/v1/customers/{customer_id}", headers=headers, timeout=10).json()
    labels = [(x["transaction_id"], x["is_fraud"], x["source"]) for x in profile["labels"]]
    assert (transaction_id, True, "analyst") in labels

    def requeued_and_decided() -> bool:
        answer = httpx.get(f"{demo['api']}/v1/transactions/stuck-1", headers=headers, timeout=10)
        return answer.status_code == 200 and answer.json()["status"] == "decided"

    wait_until(requeued_and_decided, "the requeued transaction's decision", 30)
    assert httpx.get(f"{demo['api']}/v1/dead-letters", headers=headers, timeout=10).json() == []


def test_the_client_says_in_one_line_when_the_api_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ApiClient(url, "k", timeout=2.0)
    with pytest.raises(ApiUnreachable) as caught:
        client.stats(60)
    message = str(caught.value)
    assert "\n" not in message and url in message and "fraudstream serve" in message
    client.close()


def test_the_charts_render_from_api_shaped_answers() -> None:
    series = {
        "bucket_s": 60,
        "points": [
            {
                "start": "2026-01-01T00:00:00Z",
                "by_decision": {"APPROVE": 50, "FLAG": 3},
                "latency_ms": {"mean": 2.0, "max": 9.0},
            },
            {
                "start": "2026-01-01T00:01:00Z",
                "by_decision": {"BLOCK": 1},
                "latency_ms": {"mean": 4.0, "max": 4.0},
            },
        ],
        "scores": [
            {"low": i / 20, "high": (i + 1) / 20, "by_decision": {"APPROVE": 5} if i < 3 else {}}
            for i in range(20)
        ],
    }
    frame = charts.series_frame(series)
    assert frame["count"].sum() == 54
    for chart in (
        charts.volume_chart(frame, 60), charts.mix_chart(frame), charts.latency_chart(frame),
        charts.score_chart(series["scores"]), charts.volume_chart(charts.series_frame({}), 60),
    ):  # fmt: skip
        assert chart.to_dict()["mark"]  # a valid Vega-Lite spec
    # the last complete minute: the bucket in progress is left out
    assert charts.recent_rate(series, pd.Timestamp("2026-01-01T00:01:10Z")) == pytest.approx(53 / 60)
    assert charts.recent_rate(series, pd.Timestamp("2026-01-01T00:02:10Z")) == pytest.approx(1 / 60)
    reasons = [
        {"code": "amount_z", "value": 4.25, "contribution": 1.2, "source": "xgboost"},
        {"code": "deny_device", "reason": "device is on the deny list", "source": "rules"},
    ]
    assert charts.reason_text(reasons) == "device is on the deny list; amount_z=4.25"
