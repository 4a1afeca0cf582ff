"""The dashboard in a real browser: ``fraudstream demo`` (API + worker + simulator + dashboard) on
loopback, driven by Debian's headless Chromium through Playwright.

It checks what a user would: the page loads, its figures move while traffic flows, and a click on
"Mark as fraud" reaches the API. The API requires a key, so the key's way to the dashboard is covered
too; after the demo exits, nothing listens on the dashboard's port any more.
"""

from __future__ import annotations

import itertools
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest

from fraudstream.dashboard import charts
from fraudstream.dashboard.cases import FRAUD_FILL
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


def settled(page: Any) -> None:
    """Wait until the app's script run has finished. While a rerun is under way Streamlit keeps the
    previous run's widgets on the page beside the new ones (two textareas for one key), so a test that
    saw a rerun's first output waits for this before it touches a widget drawn later in the page."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=30_000)


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
            feed_title = page.locator(".st-key-feed").get_by_text("Live feed: FLAG, CHALLENGE, HOLD, BLOCK")
            assert feed_title.is_visible()

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


#: Records every text drawn on a canvas: the tables (a data grid) draw their cells there, out of the DOM.
CANVAS_TEXT = """
(() => {
  const drawn = [];
  window.__drawnText = drawn;
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    drawn.push([this.canvas, String(text)]);
    return fillText.call(this, text, ...rest);
  };
})();
"""
#: A zone 5 h 45 min from UTC: a time shown in any other zone is off by a telling amount.
VIEWER_ZONE = "Asia/Kathmandu"
VIEWPORT = {"width": 1280, "height": 1600}
ONE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d\d?(?::\d\d){0,2}(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?")
CLOCK = re.compile(r"\d{2}:\d{2}:\d{2}")
WRONG_PLURAL = re.compile(r"(?<![\d,.])1 (decisions|transactions|labels|hits|features|matches|customers)\b")


def _drawn_in_tables(page: Any) -> list[str]:
    """The texts the page's tables show now (their cells and headers)."""
    return list(
        page.evaluate(
            """() => window.__drawnText
                .filter(([canvas]) => canvas.isConnected && canvas.closest('[data-testid="stDataFrame"]'))
                .map(([, text]) => text)"""
        )
    )


def _check_page(page: Any, shots: Path, name: str) -> str:
    """Screenshot of the whole page, and what every page must hold; the page's text, for more checks."""
    main = page.get_by_test_id("stMain")
    height = page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height) + 160)})
    time.sleep(1.0)  # the grids redraw at the new size
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    text = str(main.inner_text())
    cells = _drawn_in_tables(page)
    assert cells, f"{name}: no table drawn"
    assert "None" not in cells, f"{name}: a table shows None"
    for shown in [*DATE_LIKE.findall(text), *(c for c in cells if DATE_LIKE.match(c))]:
        assert ONE_FORMAT.fullmatch(shown), f"{name}: {shown!r} is not one whole time in the one format"
    assert not WRONG_PLURAL.search(text), WRONG_PLURAL.search(text)
    grids = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
            .filter(grid => grid.querySelector('.dvn-scroller'))  // drawn: not in a closed expander
            .map(grid => {
                const scroller = grid.querySelector('.dvn-scroller');
                return {right: grid.getBoundingClientRect().right, content: scroller.scrollWidth,
                        shown: scroller.clientWidth};
            })"""
    )
    assert grids, f"{name}: no table drawn"
    for static in page.get_by_test_id("stTable").all():  # tables of text that wraps
        assert "None" not in static.inner_text().split(), f"{name}: a table shows None"
        box = "t => ({right: t.getBoundingClientRect().right, content: t.scrollWidth, shown: t.clientWidth})"
        grids.append(static.evaluate(box))
    for grid in grids:  # no column hidden past the right edge, the table within the window
        assert grid["content"] <= grid["shown"] + 1 and grid["right"] <= VIEWPORT["width"], (name, grid)
    page.set_viewport_size(VIEWPORT)
    return text


def _minutes_from(clock: str, now: datetime) -> float:
    """How far the clock time ``HH:MM:SS`` is from ``now``'s, in minutes, across midnight too."""
    hours, minutes, seconds = (int(x) for x in clock.split(":"))
    apart = (hours * 60 + minutes + seconds / 60) - (now.hour * 60 + now.minute + now.second / 60)
    return (apart + 720) % 1440 - 720


def _ring(api: str) -> None:
    """Three customers on one device (two also on one IP address); one of them labelled fraud."""
    headers = {"X-API-Key": KEY}
    when = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
    sent = [
        ("ring-1", "C-ring-1", "10.9.9.9"), ("ring-2", "C-ring-1", "10.9.9.9"),
        ("ring-3", "C-ring-2", "10.1.1.1"), ("ring-4", "C-ring-3", "10.9.9.9"),
    ]  # fmt: skip
    for i, (tid, customer, ip) in enumerate(sent):
        body = {
            "transaction_id": tid,
            "timestamp": (when + timedelta(minutes=i)).isoformat(),
            "customer_id": customer,
            "device_id": "dev-ring",
            "ip_address": ip,
            "merchant_id": "M-ring",
            "amount": 40.0 + i,
        }
        answer = httpx.post(f"{api}/v1/score", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    label = {
        "transaction_id": "ring-4",
        "is_fraud": True,
        "label_time": (when + timedelta(hours=1)).isoformat(),
        "source": "chargeback",
    }
    assert httpx.post(f"{api}/v1/labels", json=label, headers=headers, timeout=30).status_code == 200


@pytest.mark.slow
def test_every_page_reads_well_in_the_browser(chromium: Path, demo: dict[str, Any], tmp_path: Path) -> None:
    """Screenshots of each page (in the test's folder), and what could make one read badly: "None" in
    a cell, a time in another format or zone, a table wider than the window, bars with gaps between
    buckets, a score axis that is not logarithmic, a link picture blown up past its content, no hint
    on the Entities page, "1 transactions"."""
    from playwright.sync_api import sync_playwright

    _ring(demo["api"])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        try:
            context = browser.new_context(viewport=VIEWPORT, timezone_id=VIEWER_ZONE)
            context.add_init_script(CANVAS_TEXT)
            page = context.new_page()
            page.goto(demo["dashboard"])
            volume = page.locator(".st-key-chart_volume svg.marks")

            def buckets() -> list[tuple[float, float]]:
                """The volume chart's bars as the spans of time they cover on the page, left to right."""
                if not volume.count():
                    return []
                bars = volume.evaluate(
                    """svg => [...svg.querySelectorAll('g.mark-rect path')].map(bar => {
                        const box = bar.getBoundingClientRect(); return [box.left, box.right]; })"""
                )
                return sorted({(round(left, 1), round(right, 1)) for left, right in bars})

            columns = wait_until(lambda: len(buckets()) >= 3 and buckets(), "three buckets of traffic", 90)
            for (_, right), (left, _) in itertools.pairwise(columns):
                assert abs(left - right) <= 1.0, f"a gap between buckets: {columns}"
            now = datetime.now(ZoneInfo(VIEWER_ZONE))
            sidebar = page.get_by_test_id("stSidebar").inner_text()
            assert re.search(r"times in Asia/Kath?mandu \(UTC\+05:45\)", sidebar), sidebar
            clocks = [t for t in volume.locator("text").all_text_contents() if CLOCK.fullmatch(t)]
            assert clocks and all(abs(_minutes_from(c, now)) <= 20 for c in clocks), (clocks, now)

            ticks = page.locator(".st-key-chart_scores svg.marks text").all_text_contents()
            assert {"1", "10", "100"} <= set(ticks) and "0" not in ticks, ticks  # decades: a log axis

            for panel in ("Model in use", "Models"):  # closed at first: open them to see their tables
                page.get_by_test_id("stExpander").get_by_text(panel, exact=True).click()
            page.get_by_text("training metric").wait_for(state="attached", timeout=15_000)
            text = _check_page(page, shots, "live")
            feed = [c for c in _drawn_in_tables(page) if ONE_FORMAT.fullmatch(c)]
            newest = max(datetime.strptime(c, "%Y-%m-%d %H:%M:%S") for c in feed)
            assert abs((newest - now.replace(tzinfo=None)).total_seconds()) < 600, (newest, now)
            assert "Live feed: FLAG, CHALLENGE, HOLD, BLOCK" in text

            page.get_by_text("Cases", exact=True).click()
            page.locator(".st-key-case_queue").wait_for(timeout=30_000)
            page.locator(".st-key-case_links").wait_for(timeout=30_000)
            time.sleep(2.0)
            _check_page(page, shots, "cases")

            page.get_by_text("Entities", exact=True).click()
            hint = page.locator(".st-key-entities_hint")
            hint.wait_for(timeout=30_000)
            assert "customer id, device id, IP address or merchant id" in hint.inner_text()
            page.screenshot(path=str(shots / "entities-empty.png"), full_page=True)
            search = page.get_by_label("Search a customer, device, IP address or merchant")
            search.fill("C-ring")
            search.press("Enter")
            page.get_by_text("3 matches").wait_for(timeout=30_000)
            picker = page.get_by_role("combobox", name="Entity")
            assert picker.input_value() == "customer C-ring-1 (2 transactions, latest 2025-01-20 17:46:00)"
            picker.click()
            options = page.get_by_role("option").all_inner_texts()
            assert options[1:] == [
                "customer C-ring-2 (1 transaction, latest 2025-01-20 17:47:00)",
                "customer C-ring-3 (1 transaction, latest 2025-01-20 17:48:00)",
            ], options
            page.keyboard.press("Escape")
            links = page.locator(".st-key-entity_links")
            links.wait_for(timeout=30_000)
            graph = links.get_by_test_id("stGraphVizChart").locator("svg").first
            graph.wait_for(timeout=30_000)
            size = graph.evaluate(
                """svg => ({shown: svg.getBoundingClientRect().width, own: svg.viewBox.baseVal.width * 4 / 3,
                    room: svg.closest('.st-key-entity_links').getBoundingClientRect().width})"""
            )  # the drawing's own width: Graphviz sizes it in points
            assert size["shown"] <= size["own"] + 2 and size["shown"] < size["room"] / 2, size
            nodes = graph.evaluate(
                """svg => Object.fromEntries([...svg.querySelectorAll('g.node')].map(node => [
                    [...node.querySelectorAll('text')].map(t => t.textContent).join(' '),
                    node.querySelector('path, polygon').getAttribute('fill')]))"""
            )
            assert nodes["customer C-ring-3"] == FRAUD_FILL and nodes["customer C-ring-2"] != FRAUD_FILL, (
                nodes
            )
            assert {"customer C-ring-1", "device dev-ring", "IP address 10.9.9.9", "merchant M-ring"} <= set(
                nodes
            )
            text = _check_page(page, shots, "entities")
            assert "Numbers on the lines: transactions" in text

            page.get_by_text("Rules", exact=True).click()
            page.locator(".st-key-rules_hits").wait_for(timeout=30_000)
            time.sleep(2.0)
            text = _check_page(page, shots, "rules")
            assert "customer_count_1h >= 5 and amount < 5" in text  # a rule's condition, whole and as written
        finally:
            browser.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "cases.png", "entities-empty.png", "entities.png", "live.png", "rules.png"
    ]  # fmt: skip


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
