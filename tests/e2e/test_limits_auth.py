"""Rate limits and the authenticated surface, as a client meets them: 429 with ``Retry-After`` on the
routes and on ``POST /v1/score``'s fast path, failed authentications that block an address, ``/metrics``
behind the key, ``/ready`` without versions for anonymous callers, and a dashboard that will not serve
beyond loopback without each user signing in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from fraudstream.api import create_app
from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.dashboard import is_loopback
from fraudstream.runtime import open_services
from tests.e2e.apitools import Api, metric, tx
from tests.e2e.test_dashboard import chromium, healthy, listening, wait_until
from tests.e2e.test_dashboard import metric as shown
from tests.e2e.test_demo import free_port
from tests.serving import uvicorn_thread

__all__ = ["chromium"]  # a fixture this module uses

KEY, OTHER = "limits-key-1-012", "limits-key-2-012"
PER_KEY = "too many requests for this API key"
SCORE_429 = 'fraudstream_http_request_seconds_count{method="POST",route="/v1/score",status="429"}'


def refused(response: httpx.Response, why: str, window: int = 60) -> bool:
    """A 429 saying ``why``, with a ``Retry-After`` within the window, in the API's error shape."""
    assert response.status_code == 429, response.text
    assert why in response.json()["detail"], response.json()
    assert 1 <= int(response.headers["retry-after"]) <= window
    return True


# --- per key, per address, on the routes and the fast path ------------------------------------------


def test_a_key_over_its_limit_gets_429_on_every_route(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys=f"{KEY},{OTHER}", rate_limit_key="4/minute")
    mine, other = {"X-API-Key": KEY}, {"Authorization": f"Bearer {OTHER}"}
    assert client.post("/v1/score", json=tx("k-1"), headers=mine).status_code == 200
    assert client.post("/v1/score", json=tx("k-1", amount=-1), headers=mine).status_code == 422  # counted
    assert client.get("/v1/stats", headers=mine).status_code == 200
    assert client.get("/v1/transactions/k-1", headers=mine).status_code == 200  # the fourth
    assert refused(client.post("/v1/score", json=tx("k-2"), headers=mine), PER_KEY)
    assert refused(client.get("/v1/stats", headers=mine), PER_KEY)
    # refused before anything was done: k-2 was never scored; and another key has a budget of its own
    assert client.get("/v1/transactions/k-2", headers=other).status_code == 404
    assert client.post("/v1/score", json=tx("k-3"), headers=other).status_code == 200
    # refused before routing, the score's 429 is still timed under its route, like its 200s
    client.headers["X-API-Key"] = OTHER
    assert metric(client, SCORE_429) == 1.0
    assert client.get("/health").status_code == 200  # never limited


def test_requests_without_keys_are_limited_per_address(make_api: Callable[..., Api]) -> None:
    client, _, app = make_api(api_keys="", rate_limit_address="3/minute")
    assert [client.post("/v1/score", json=tx(f"a-{i}")).status_code for i in range(3)] == [200] * 3
    assert refused(client.post("/v1/score", json=tx("a-3")), "too many requests for this address")
    assert refused(client.get("/v1/stats"), "too many requests for this address")
    elsewhere = TestClient(app, client=("10.1.2.3", 40000))
    assert elsewhere.post("/v1/score", json=tx("a-4")).status_code == 200
    assert client.get("/health").json() == {"status": "ok"}


def test_failed_authentications_block_the_address_for_the_window(make_api: Callable[..., Api]) -> None:
    client, _, app = make_api(api_keys=KEY, rate_limit_failed_auth="5/minute")
    failures = [
        client.get("/v1/stats"),
        client.post("/v1/score", json=tx("f-1")),
        client.post("/v1/score", json=tx("f-1"), headers={"X-API-Key": "guess-1"}),
        client.get("/metrics", headers={"Authorization": "Bearer guess-2"}),
        client.get("/ready", headers={"X-API-Key": "guess-3"}),  # open, but a wrong key is still wrong
    ]
    assert [r.status_code for r in failures] == [401, 401, 403, 403, 403]
    why = "too many failed authentications from this address"
    # blocked now for whoever has no valid key: guessing stops
    assert refused(client.get("/v1/stats", headers={"X-API-Key": "guess-4"}), why)
    assert refused(client.get("/v1/stats"), why)
    # a valid key from the same address (behind one proxy, one port mapping) is never locked out
    assert client.get("/v1/stats", headers={"X-API-Key": KEY}).status_code == 200
    assert client.post("/v1/score", json=tx("f-2"), headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/health").status_code == 200
    elsewhere = TestClient(app, client=("10.9.8.7", 40000))
    assert elsewhere.post("/v1/score", json=tx("f-3"), headers={"X-API-Key": KEY}).status_code == 200


def test_limits_can_be_switched_off(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(rate_limits=False, rate_limit_address="1/minute", api_keys=KEY)
    answers = [client.post("/v1/score", json=tx(f"o-{i}"), headers={"X-API-Key": KEY}) for i in range(3)]
    answers += [client.get("/v1/stats") for _ in range(3)]
    assert [r.status_code for r in answers] == [200] * 3 + [401] * 3


def test_limit_settings_are_checked_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(rate_limit_key="plenty")
    assert "rate_limit_key" in str(caught.value) and "'600/minute'" in str(caught.value)
    with pytest.raises(ValidationError, match="rate_limit_failed_auth"):
        Settings(rate_limit_failed_auth="0/minute")
    with pytest.raises(ValidationError, match="rate_limit_storage"):
        Settings(rate_limit_storage="memcached://127.0.0.1:11211")
    assert Settings(rate_limit_address="20 per second").rate_limit_address == "20 per second"


# --- /metrics, /ready, /health ---------------------------------------------------------------------


def test_metrics_need_the_key_and_ready_shows_versions_only_to_key_holders(
    make_api: Callable[..., Api],
) -> None:
    client, services, _ = make_api(api_keys=KEY)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 403
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})  # as Prometheus sends it
    assert scraped.status_code == 200 and "fraudstream_decisions_total" in scraped.text
    assert client.get("/health").json() == {"status": "ok"}

    anonymous = client.get("/ready")
    assert anonymous.status_code == 200
    assert anonymous.json() == {
        "status": "ready",
        "checks": {name: {"ok": True} for name in ("database", "broker", "state", "model")},
    }
    assert services.scorer.version not in anonymous.text
    holder = client.get("/ready", headers={"X-API-Key": KEY}).json()
    assert holder["checks"]["model"] == {"ok": True, "detail": f"model {services.scorer.version}"}


def test_without_keys_everything_stays_open(api: Api) -> None:
    client, services, _ = api
    assert client.get("/metrics").status_code == 200
    assert client.get("/ready").json()["checks"]["model"]["detail"] == f"model {services.scorer.version}"


# --- the dashboard beyond loopback -----------------------------------------------------------------


def test_loopback_is_told_apart() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "", "::", "192.168.1.10", "example.org"]))


@contextmanager
def serving(tmp_path: Path, bundle_path: Path, keys: str) -> Iterator[str]:
    """A real API on a free loopback port (uvicorn in a thread); its URL."""
    folder = tmp_path / "api"
    folder.mkdir()
    settings = Settings(
        data_dir=folder, database_url=f"sqlite:///{folder}/t.db", model_path=bundle_path, api_keys=keys
    )
    services = open_services(settings, warm=False)
    try:
        with uvicorn_thread(create_app(settings, services)) as url:
            yield url
    finally:
        services.close()


def test_the_dashboard_refuses_to_serve_beyond_loopback_an_api_without_keys(
    tmp_path: Path, bundle_path: Path
) -> None:
    port = free_port()
    with serving(tmp_path, bundle_path, keys="") as url:
        args = ["dashboard", "--api-url", url, "--host", "0.0.0.0", "--port", str(port)]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "refusing to serve the dashboard on 0.0.0.0" in output and "FRAUD_API_KEYS" in output
    assert not listening(port)


@pytest.mark.slow
def test_beyond_loopback_each_user_signs_in_with_their_own_key(
    chromium: Path, tmp_path: Path, bundle_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    with serving(tmp_path, bundle_path, keys=f"{KEY},{OTHER}") as url:
        # the server's keys are in the command's environment: none of them may reach the page
        env = os.environ | {"FRAUD_API_KEYS": f"{KEY},{OTHER}", "FRAUD_API_KEY": KEY, "COLUMNS": "200"}
        command = [sys.executable, "-m", "fraudstream", "dashboard", "--api-url", url]
        board = subprocess.Popen(
            [*command, "--host", "0.0.0.0", "--port", str(port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(board.stdout or []), daemon=True)
        reader.start()
        try:
            page_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: healthy(f"{page_url}/_stcore/health") or board.poll() is not None, "it", 60)
            assert board.poll() is None, "".join(lines)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(chromium))
                try:
                    _sign_in_and_out(browser.new_page(viewport={"width": 1400, "height": 1200}), page_url)
                    fresh = browser.new_page()  # another session: signed out, whatever the first did
                    fresh.goto(page_url)
                    fresh.get_by_text("Sign in with your API key").wait_for(timeout=30_000)
                finally:
                    browser.close()
        finally:
            board.send_signal(signal.SIGINT)
            board.wait(30)
            reader.join(5)
    assert "each user signs in with an API key of their own" in " ".join("".join(lines).split())


def _sign_in_and_out(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_text("Sign in with your API key").wait_for(timeout=30_000)
    time.sleep(1.0)  # a page given a key would have drawn its figures by now
    assert shown(page, "Transactions") is None and not page.get_by_text("Live feed").count()

    key_field = page.get_by_label("API key")
    key_field.fill("not-a-key")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text("Not signed in: the API refused this key").wait_for(timeout=15_000)
    assert shown(page, "Transactions") is None

    key_field.fill(OTHER)
    page.get_by_role("button", name="Sign in", exact=True).click()
    wait_until(lambda: shown(page, "Transactions") is not None, "the figures after signing in", 30)
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_text("Sign in with your API key").wait_for(timeout=15_000)
    assert shown(page, "Transactions") is None
