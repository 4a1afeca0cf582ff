"""A decision's reasons: what each one says, and how to read one in a line.

A model reason names a feature (``code``), the value it had, its ``contribution`` to the fraud score,
the model that explained it (``source``), the feature's human ``description`` and the ``direction`` it
pushed the decision. Model reasons are the largest positive contributions, so they raise the risk, and
only decisions other than APPROVE carry them: an APPROVE has nothing to justify. A feature whose value is
missing is never a reason (the model read "unknown", which a reviewer cannot act on). A rule reason
names the rule (``code``) with its ``reason`` and ``source: rules``; APPROVE rules and the allow list
lower the risk, every other rule and the deny list raise it.
"""

from __future__ import annotations

from typing import Any

RAISES = "raises_risk"
LOWERS = "lowers_risk"
DIRECTIONS = {RAISES: "raises risk", LOWERS: "lowers risk"}
ALLOW_PREFIX = "allow_list:"


def rule_direction(label: str, approving: frozenset[str]) -> str:
    """``lowers_risk`` for an APPROVE rule or an allow-list hit, ``raises_risk`` for the rest."""
    return LOWERS if label in approving or label.startswith(ALLOW_PREFIX) else RAISES


def reason_text(reason: dict[str, Any]) -> str:
    """One reason in a line, for people: ``IP address: seconds since first seen = 31,047 (raises risk)``
    or ``rule night_burst: many payments at night (raises risk)``. Reasons stored before descriptions
    existed read with their feature name."""
    direction = DIRECTIONS.get(str(reason.get("direction")))
    if reason.get("source") == "rules":
        text = f"rule {reason.get('code')}: {reason.get('reason')}"
    else:
        about = reason.get("description") or reason.get("code")
        text = f"{about} = {value_text(reason.get('value'))}"
        direction = direction or (DIRECTIONS[RAISES] if (reason.get("contribution") or 0) > 0 else None)
    return f"{text} ({direction})" if direction else text


def value_text(value: Any) -> str:
    """``31047.0`` → ``31,047``, ``12.3456`` → ``12.35``, ``None`` → ``missing``."""
    if value is None:
        return "missing"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:
        return "missing"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"
