"""The dashboard's Webhooks page against a canned API: the endpoints and the delivery log with its
filters, a delivery's attempts, the replay button, and what an analyst's key is told."""

from __future__ import annotations

import sys

import pytest

from fraudstream.dashboard.webhooks import attempts_frame, deliveries_frame, endpoints_frame

ENDPOINT = {
    "id": 1, "url": "https://hooks.example.com/fraud", "events": ["decision.created", "case.verdict"],
    "enabled": True, "description": "payments", "subscribed_at": "2026-01-01T00:00:00Z",
}  # fmt: skip
FAILED = {
    "id": 7, "event_id": "evt_" + "a" * 32, "event_type": "decision.created", "endpoint_id": 1,
    "url": ENDPOINT["url"], "status": "failed", "attempts": 2, "created_at": "2026-01-01T10:00:00Z",
    "next_attempt_at": None, "finished_at": "2026-01-01T10:00:30.5Z", "last_status": 500,
    "last_error": "HTTP 500: boom", "replay_of": None,
    "log": [
        {"attempt": 1, "attempted_at": "2026-01-01T10:00:00.1Z", "status_code": None,
         "error": "ConnectError: refused", "duration_ms": 1.5},
        {"attempt": 2, "attempted_at": "2026-01-01T10:00:30Z", "status_code": 500, "error": "HTTP 500: boom",
         "duration_ms": 12.0},
    ],
}  # fmt: skip


def test_the_frames_show_times_as_times_and_missing_values_as_missing() -> None:
    deliveries = deliveries_frame([FAILED])
    assert list(deliveries.columns[:6]) == [
        "id",
        "event_type",
        "status",
        "attempts",
        "last_status",
        "last_error",
    ]
    assert (
        str(deliveries["queued"].dtype).startswith("datetime64") and deliveries["next attempt"].isna().all()
    )
    attempts = attempts_frame(FAILED)
    assert list(attempts["status_code"].isna()) == [True, False]
    assert attempts["attempted_at"].iloc[1].isoformat() == "2026-01-01T10:00:30+00:00"
    assert endpoints_frame([ENDPOINT])["events"].iloc[0] == ["decision.created", "case.verdict"]
    assert deliveries_frame([]).empty


def _page_app() -> None:
    """The page against a canned client that keeps what it was asked in the session."""
    import streamlit as st

    from fraudstream.dashboard.client import DashboardError
    from fraudstream.dashboard.webhooks import webhooks_page
    from tests.unit.test_dashboard_webhooks import ENDPOINT, FAILED

    calls = st.session_state.setdefault("calls", [])
    admin = st.session_state.setdefault("admin", True)

    class Canned:
        def webhooks(self) -> list[dict[str, object]]:
            if not admin:
                raise DashboardError("the API refused the key (this needs the admin role)")
            return [ENDPOINT]

        def deliveries(self, **query: object) -> list[dict[str, object]]:
            calls.append(("deliveries", query))
            return [FAILED]

        def replay(self, delivery_id: int) -> dict[str, object]:
            calls.append(("replay", delivery_id))
            return {**FAILED, "id": 8, "status": "pending", "replay_of": delivery_id, "log": []}

    webhooks_page(Canned())  # type: ignore[arg-type]


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit runs the app as ``__main__`` and leaves it there: put the real one back."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.mark.usefixtures("main_module")
def test_the_page_filters_the_log_shows_the_attempts_and_replays_a_delivery() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_page_app).run()
    assert not app.exception
    assert app.session_state["calls"][-1] == (
        "deliveries", {"endpoint_id": None, "event_type": None, "status": None, "limit": 100}
    )  # fmt: skip
    assert len(app.dataframe) == 3  # endpoints, deliveries, the chosen one's attempts
    assert "ConnectError: refused" in app.dataframe[2].value.to_string()
    app.selectbox(key="webhook_status").select("failed")
    app.selectbox(key="webhook_endpoint").select(1)
    app.selectbox(key="webhook_type").select("decision.created")
    app.run()
    assert app.session_state["calls"][-1] == (
        "deliveries", {"endpoint_id": 1, "event_type": "decision.created", "status": "failed", "limit": 100}
    )  # fmt: skip
    app.button(key="webhook_replay").click().run()
    assert ("replay", 7) in app.session_state["calls"]
    assert "replayed as delivery 8" in app.success[0].value


@pytest.mark.usefixtures("main_module")
def test_a_key_without_the_admin_role_is_told_why_the_page_is_empty() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_page_app)
    app.session_state["admin"] = False
    app.run()
    assert not app.exception and "admin" in app.error[0].value and not app.dataframe
