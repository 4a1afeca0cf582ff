"""A shadow rule over HTTP: its hit is stored with the decision as ``shadow:<name>``, and the answer is the
one a server without it gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.apitools import Api, tx


def _server(make_api: Callable[..., Api], folder: Path, rules: str) -> Api:
    path = folder / f"rules{len(list(folder.glob('rules*.yaml')))}.yaml"
    path.write_text(rules, encoding="utf-8")
    return make_api(rules_path=path)


def test_a_shadow_rule_is_recorded_with_the_decision_and_changes_nothing(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    watched, _, _ = _server(
        make_api,
        tmp_path,
        "rules:\n  - {name: all_of_them, when: 'amount >= 0', action: BLOCK, reason: every payment,"
        " alert: true, shadow: true}\n",
    )
    plain, _, _ = _server(make_api, tmp_path, "rules: []\n")
    body = tx("s1", "C-1", amount=75.0)
    with_shadow = watched.post("/v1/score", json=body).json()
    without = plain.post("/v1/score", json=body).json()
    assert with_shadow["rules"] == ["shadow:all_of_them"] and without["rules"] == []
    assert with_shadow["decision"] == without["decision"]
    assert with_shadow["reasons"] == without["reasons"]
    stored = watched.get("/v1/transactions/s1").json()["decision"]
    assert stored["rules"] == ["shadow:all_of_them"] and stored["decision"] == without["decision"]
