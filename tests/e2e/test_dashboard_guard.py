"""The Rules page's rule guard in a real browser (headless Chromium through Playwright), against a running
``fraudstream serve``: a rule the guard moved to shadow is shown with a re-enable button, and an admin's
click, with a reason, lets it act again (audited under the admin key's name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudstream.storage import open_store
from tests.e2e.test_dashboard import chromium, healthy, wait_until
from tests.e2e.test_demo import free_port

__all__ = ["chromium"]  # the fixture

FIGURES = {"hits": 812, "decisions": 1_000, "expected_hits": 2, "expected_decisions": 1_000, "multiple": 5.0}


def start(args: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fraudstream", *args], env=env, stdout=out, stderr=out)
        wait_until(lambda: healthy(url) or proc.poll() is not None, f"{args[0]} at {url}", 60)
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.fixture
def stack(tmp_path: Path, bundle_path: Path) -> Iterator[dict[str, Any]]:
    """A server whose rule ``big`` the guard moved to shadow, and a dashboard holding an admin key."""
    url = f"sqlite:///{tmp_path}/fraud.db"
    with open_store(url) as store:
        store.migrate()
        admin = store.keys.create("lead", "admin")[1]
        assert store.rule_guard.trip("big", "1", **FIGURES) is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: big, when: 'amount > 1000', action: BLOCK, reason: big amount}\n")
    env = os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path), "FRAUD_DATABASE_URL": url, "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_RULES_PATH": str(rules),
    }  # fmt: skip
    env.pop("FRAUD_API_KEYS", None)
    api = f"http://127.0.0.1:{free_port()}"
    procs = [start(["serve", "--port", api.rsplit(":", 1)[1]], env, f"{api}/health", tmp_path / "serve.log")]
    try:
        board = f"http://127.0.0.1:{free_port()}"
        args = ["dashboard", "--port", board.rsplit(":", 1)[1], "--api-url", api, "--api-key", admin]
        procs.append(start(args, env, f"{board}/_stcore/health", tmp_path / "dashboard.log"))
        yield {"api": api, "admin": admin, "board": board}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(30)


@pytest.mark.slow
def test_an_admin_re_enables_a_guarded_rule_from_the_rules_page(
    chromium: Path, stack: dict[str, Any]
) -> None:
    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=stack["api"], headers={"X-API-Key": stack["admin"]}) as api:
        assert [g["rule"] for g in api.get("/v1/rules/guard").json()["in_force"]] == ["big"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium))
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                page.goto(stack["board"])
                page.get_by_text("Rules", exact=True).click()
                guard = page.locator(".st-key-rules_guard")
                guard.wait_for(timeout=30_000)
                assert "In shadow by the guard: big" in guard.inner_text()
                assert "812 hits in 1,000 decisions" in guard.inner_text()
                page.locator(".st-key-guard_reason_big input").fill("the feed's amounts were in cents; fixed")
                page.locator(".st-key-guard_reenable_big button").click()
                page.get_by_text("In shadow by the guard: none").wait_for(timeout=30_000)
            finally:
                browser.close()
        assert api.get("/v1/rules/guard").json()["in_force"] == []
        audit = api.get("/v1/audit", params={"subject": "rule:big"}).json()
        assert [(a["action"], a["actor"]) for a in audit] == [("reenable", "lead"), ("guard", "rule-guard")]
        assert audit[0]["after"]["release_reason"] == "the feed's amounts were in cents; fixed"
