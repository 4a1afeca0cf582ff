"""The API's documentation pages render in a browser that can reach nothing but the API."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from fraudstream.api import create_app
from fraudstream.config import Settings
from tests.e2e.test_dashboard import chromium  # noqa: F401  (the fixture)
from tests.e2e.test_demo import free_port


@pytest.fixture
def served(tmp_path: Path, bundle_path: Path) -> Iterator[str]:
    """A real server on loopback (a browser needs one), in a thread of the test."""
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db", model_path=bundle_path, api_keys=""
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_swagger_ui_and_redoc_render_with_no_network(chromium: Path, served: str) -> None:  # noqa: F811
    from playwright.sync_api import Route, sync_playwright

    refused: list[str] = []

    def only_the_api(route: Route) -> None:
        if route.request.url.startswith(served):
            route.continue_()
        else:  # a CDN, a font: what a machine without internet could not load
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        try:
            page = browser.new_page()
            page.route("**/*", only_the_api)
            page.goto(f"{served}/docs")
            page.wait_for_selector(".swagger-ui .info .title:has-text('fraudstream')", timeout=30_000)
            # the operations, read from the API's document
            page.wait_for_selector(".opblock-summary-path[data-path='/v1/score']", timeout=30_000)
            page.goto(f"{served}/redoc")
            page.wait_for_selector("h1:has-text('fraudstream')", timeout=30_000)
            page.wait_for_function("document.body.textContent.includes('/v1/score')", timeout=30_000)
        finally:
            browser.close()
    assert refused == []


def test_the_documentation_pages_name_only_the_apis_own_assets(api: Any) -> None:
    client, _, _ = api
    for page in ("/docs", "/redoc"):
        answer = client.get(page)
        assert answer.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
        assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
    script = client.get("/docs/assets/redoc/redoc.standalone.js")
    assert script.status_code == 200 and b"cdn.redoc.ly" not in script.content
    assert not {"/docs", "/redoc"} & set(client.get("/openapi.json").json()["paths"])
