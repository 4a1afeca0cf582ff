"""What the dashboard's models panel shows, from canned API answers (no browser, no API)."""

from __future__ import annotations

import sys

import pytest

from fraudstream.dashboard.models import (
    compare_frame,
    empty_message,
    pairs_frame,
    promotions_frame,
    roles,
)

METRICS = {
    "labelled": 40,
    "frauds": 4,
    "auc": 0.9,
    "average_precision": 0.7,
    "flag_rate": 0.1,
    "recall": 0.75,
    "recall_at_flag_rate": 0.75,
    "caught_fraud_amount": 300.0,
    "fraud_amount": 400.0,
    "false_positive_rate": 0.02,
}
REPORT = {
    "since": "2026-11-17T00:00:00+00:00",
    "labelled": 40,
    "models": [
        {"version": "v2", "decided": 0, "in_shadow": 40, **METRICS, "auc": 0.95},
        {"version": "v1", "decided": 40, "in_shadow": 0, **METRICS},
    ],
    "pairs": [{"decided_by": "v1", "other": "v2", "labelled": 40, "agreement": 0.875}],
}


def test_the_comparison_lists_each_model_champion_first_with_readable_metrics() -> None:
    frame = compare_frame(REPORT)
    assert frame["decided"].tolist() == [40, 0] and frame["in shadow"].tolist() == [0, 40]
    assert frame["version"].tolist() == ["v1", "v2"]
    assert frame["AUC"].tolist() == [0.9, 0.95]
    assert "recall at the acting flag rate" in frame.columns and "false-positive rate" in frame.columns
    assert pairs_frame(REPORT)["agreement"].tolist() == [0.875]
    assert empty_message(REPORT) is None


def test_no_labels_and_no_challenger_say_so() -> None:
    empty = {"since": "2026-11-23T00:00:00+00:00", "labelled": 0, "models": [], "pairs": []}
    message = empty_message(empty)
    assert message is not None
    assert "no labelled decisions since 2026-11-23" in message and "POST /v1/labels" in message
    assert compare_frame(empty).empty and pairs_frame(empty).empty
    alone = {**REPORT, "models": REPORT["models"][1:], "pairs": []}
    assert "no challenger" in (empty_message(alone) or "")


def test_roles_and_promotions_come_from_the_model_and_the_registry() -> None:
    models = {
        "versions": [{"version": "3", "aliases": ["challenger"]}, {"version": "2", "aliases": ["champion"]}],
        "promotions": [
            {
                "promoted_at": "2026-11-24T10:00:00",
                "action": "promote",
                "from_version": "1",
                "to_version": "2",
                "promoted_by": "ops (admin)",
            },
        ],
    }
    line = roles({"version": "v2"}, models)
    assert "champion **v2**" in line and "registry version 3" in line
    assert roles(None, None) == "champion **none**, challenger **none**"
    ab = roles({"version": "v2", "challenger": {"version": "v3", "share": 0.2}}, models)
    assert ab == "champion **v2**, challenger **v3** (deciding 20% of customers, A/B)"
    assert promotions_frame(models)["to_version"].tolist() == ["2"]
    assert promotions_frame(None).empty


def _panel_app() -> None:
    """The panel against a canned client: the comparison for 7 days, no labels for any other period."""
    from fraudstream.dashboard.models import models_panel

    report = {
        "since": "2026-11-17T00:00:00+00:00",
        "labelled": 1,
        "models": [{"version": "v1", "decided": 3, "in_shadow": 0, "auc": 0.9}],
        "pairs": [{"champion": "v1", "shadow": "v2", "labelled": 1, "agreement": 1.0}],
    }

    class Canned:
        def model(self) -> dict[str, object]:
            return {"version": "v1", "challenger": {"version": "v2"}}

        def models(self) -> dict[str, object]:
            return {"versions": [], "promotions": []}

        def compare(self, since: str) -> dict[str, object]:
            empty = {"since": "2026-11-23T00:00:00+00:00", "labelled": 0, "models": [], "pairs": []}
            return report if since == "7d" else empty

    models_panel(Canned())  # type: ignore[arg-type]


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit runs the app as ``__main__`` and leaves it there; a process spawned later in the run
    (the replay's writer) would then import that temporary script. Put the real one back."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.mark.usefixtures("main_module")
def test_the_panel_renders_the_comparison_and_the_empty_state_per_period() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_panel_app).run()
    assert not app.exception
    assert "challenger **v2**" in app.markdown[0].value
    assert len(app.dataframe) == 2 and not app.info  # the comparison table and the pair's agreement
    app.selectbox(key="models_period").select("1 day").run()
    assert not app.exception and len(app.dataframe) == 0
    assert "no labelled decisions since 2026-11-23" in app.info[0].value
