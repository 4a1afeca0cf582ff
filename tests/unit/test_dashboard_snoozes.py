"""The case page's rule snoozes, against a canned API: the rules that fired on the case's newest
transaction can be snoozed for its customer, device, IP or merchant with days and a reason; the
snoozes in force on those values are listed, each with a lift button."""

from __future__ import annotations

import sys

import pytest

from fraudstream.dashboard.cases import snooze_targets

CASE = {"id": 3, "group_key": "customer_id", "group_value": "C-1", "decisions": [{"transaction_id": "t9"}]}


def test_a_rule_can_be_snoozed_for_the_case_s_value_and_its_newest_transaction_s_entities() -> None:
    entity = {
        "transactions": [
            {"transaction_id": "t9", "customer_id": "C-1", "device_id": "D-4", "ip_address": None,
             "merchant_id": "M-2"},
            {"transaction_id": "t1", "customer_id": "C-1", "device_id": "D-0", "ip_address": "1.2.3.4"},
        ]
    }  # fmt: skip
    assert snooze_targets(CASE, entity, "t9") == {
        "customer_id": "C-1",
        "device_id": "D-4",
        "merchant_id": "M-2",
    }
    assert snooze_targets(CASE, None, "t9") == {"customer_id": "C-1"}


def _panel_app() -> None:
    """The panel against a canned client that keeps what it was asked to do in the session."""
    import streamlit as st

    from fraudstream.dashboard.cases import snooze_panel

    calls = st.session_state.setdefault("calls", [])

    class Canned:
        def transaction(self, transaction_id: str) -> dict[str, object]:
            return {"decision": {"rules": ["deny_list:ip_address", "big", "snoozed:night", "shadow:new"]}}

        def entity(self, field: str, value: str) -> dict[str, object]:
            return {"transactions": [{"transaction_id": "t9", "customer_id": "C-1", "device_id": "D-4"}]}

        def snoozes(self) -> list[dict[str, object]]:
            mine = {"id": 5, "rule": "night", "field": "device_id", "value": "D-4", "analyst": "bo",
                    "until": "2030-01-01T00:00:00+00:00", "reason": "travels"}  # fmt: skip
            other = {**mine, "id": 6, "value": "D-7", "reason": "someone else's"}
            return [mine, other]

        def snooze(self, rule: str, field: str, value: str, days: int, reason: str) -> dict[str, object]:
            calls.append(("snooze", rule, field, value, days, reason))
            return {}

        def lift(self, snooze_id: int) -> dict[str, object]:
            calls.append(("lift", snooze_id))
            return {}

    case = {
        "id": 3,
        "group_key": "customer_id",
        "group_value": "C-1",
        "decisions": [{"transaction_id": "t9"}],
    }
    snooze_panel(Canned(), case)  # type: ignore[arg-type]


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit runs the app as ``__main__`` and leaves it there: put the real one back."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.mark.usefixtures("main_module")
def test_the_panel_snoozes_a_fired_rule_and_lifts_a_snooze_in_force() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_panel_app).run()
    assert not app.exception
    shown = " ".join(m.value for m in app.markdown)
    assert "`night` for device D-4" in shown and "travels" in shown and "someone else's" not in shown
    assert app.selectbox(key="snooze_rule").options == ["big"]
    assert app.selectbox(key="snooze_for").options == ["customer C-1", "device D-4"]

    app.button(key="snooze_add").click().run()
    assert app.warning and not app.session_state["calls"]  # no reason: nothing is sent

    app.selectbox(key="snooze_for").select("device_id")
    app.number_input(key="snooze_days").set_value(7)
    app.text_input(key="snooze_reason").input("reviewed: a travelling customer")
    app.button(key="snooze_add").click().run()
    assert app.session_state["calls"] == [
        ("snooze", "big", "device_id", "D-4", 7, "reviewed: a travelling customer")
    ]

    app.button(key="snooze_lift_5").click().run()
    assert app.session_state["calls"][-1] == ("lift", 5)
