"""Analysts' rules and allow/deny lists, applied to a whole batch on top of the model's decisions.

A :class:`RuleSet` is immutable once built (by :func:`fraudstream.rules.parse_rules` or
:func:`fraudstream.rules.load_rules`), so a reloader can swap one in while other threads score with
the previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from fraudstream.events.transaction import DECISIONS
from fraudstream.rules.columns import Columns
from fraudstream.rules.errors import RulesError
from fraudstream.rules.expr import CompiledExpr

"""Decisions in increasing severity: a rule or model can only push a row up this scale, except
APPROVE rules and the allow list, which override it on purpose."""

LIST_FIELDS: Final = ("customer_id", "device_id", "ip_address", "merchant_id")

_APPROVE, _FLAG, _BLOCK = range(3)


@dataclass(frozen=True)
class Rule:
    """A named condition with the decision it asks for and the reason shown to reviewers.

    ``alert`` marks rules whose hits should page someone, not only change the decision.
    """

    name: str
    when: str
    action: str
    reason: str
    expr: CompiledExpr
    alert: bool = False

    def __post_init__(self) -> None:
        if self.action not in DECISIONS:
            raise RulesError(f"action {self.action!r} is not one of {', '.join(DECISIONS)}", rule=self.name)


@dataclass
class RuleOutcome:
    """Per-row result of :meth:`RuleSet.apply`.

    ``decision`` holds ``"APPROVE"``/``"FLAG"``/``"BLOCK"`` strings (object array); ``fired`` the
    names of the rules that fired on each row, after ``"deny_list:<field>"`` and
    ``"allow_list:<field>"`` entries for list hits; ``reasons`` the matching reasons, in the same
    order; ``alert`` whether a fired rule asks for an alert or the row hit the deny list.
    """

    decision: np.ndarray
    fired: list[list[str]]
    reasons: list[list[str]]
    alert: np.ndarray


@dataclass(frozen=True, eq=False)
class RuleSet:
    """Rules in file order plus allow and deny lists of ids per field (see :data:`LIST_FIELDS`).

    ``version`` is a short hash of the rules file, recorded with every decision so that a decision
    can be traced to the exact rules that made it; ``source`` names the file in error messages.
    """

    rules: list[Rule] = field(default_factory=list)
    allow: dict[str, frozenset[str]] = field(default_factory=dict)
    deny: dict[str, frozenset[str]] = field(default_factory=dict)
    version: str = "empty"
    source: str = "<rules>"

    @classmethod
    def empty(cls) -> RuleSet:
        """No rules and no lists: the model decides alone."""
        return cls()

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> frozenset[str]:
        """Every column :meth:`apply` will read, so a caller can check a batch before scoring."""
        read = {name for rule in self.rules for name in rule.expr.names}
        read |= {f for lists in (self.allow, self.deny) for f, ids in lists.items() if ids}
        return frozenset(read)

    def apply(self, columns: Mapping[str, Any], model_decision: np.ndarray) -> RuleOutcome:
        """Combine the model's decisions with the lists and rules, for every row of a batch at once.

        Precedence, highest first:

        1. a deny-list hit → BLOCK;
        2. an allow-list hit → APPROVE (known-good customers are never stopped by rules or model);
        3. any BLOCK rule fired → BLOCK;
        4. any APPROVE rule fired → APPROVE: a rule may override the model downwards, e.g. to
           silence a known false-positive pattern;
        5. otherwise the more severe of the model's decision and FLAG if any FLAG rule fired.

        Every rule is evaluated on every row, so ``fired`` and ``reasons`` list all hits even when a
        list decided the row; that is what reviewers want to see. ``columns`` maps names to arrays
        of the batch's length (numbers as floats with NaN for missing, text as object arrays with
        ``None``); ``model_decision`` holds ``"APPROVE"``/``"FLAG"``/``"BLOCK"`` per row.
        """
        model = np.asarray(model_decision)
        if model.ndim != 1:
            raise ValueError(f"model_decision must be one-dimensional, not of shape {model.shape}")
        n = model.shape[0]
        rank = np.full(n, -1, dtype=np.int8)
        for i, name in enumerate(DECISIONS):
            rank[model == name] = i
        if (rank < 0).any():
            bad = sorted({str(v) for v in model[rank < 0]})[:5]
            raise ValueError(f"model decisions must be one of {', '.join(DECISIONS)}; got {bad}")

        view = Columns(columns, n)
        # Most rows fire nothing: they share one empty list, and a row gets lists of its own on a hit.
        nothing: list[str] = []
        fired: list[list[str]] = [nothing] * n
        reasons: list[list[str]] = [nothing] * n

        def note(mask: np.ndarray, label: str, reason: str) -> None:
            for i in np.flatnonzero(mask).tolist():
                fired[i] = [*fired[i], label]
                reasons[i] = [*reasons[i], reason]

        deny = self._list_hits(self.deny, "deny", view, note)
        allow = self._list_hits(self.allow, "allow", view, note)
        hits = {action: np.zeros(n, dtype=bool) for action in DECISIONS}
        alert = deny.copy()
        for rule in self.rules:
            try:
                mask = rule.expr.evaluate(view)
            except RulesError as exc:
                raise exc.within(rule=rule.name, source=self.source) from None
            if mask.any():
                note(mask, rule.name, rule.reason)
                hits[rule.action] |= mask
                if rule.alert:
                    alert |= mask

        final = np.maximum(rank, np.where(hits["FLAG"], _FLAG, _APPROVE))
        final = np.where(hits["APPROVE"], _APPROVE, final)
        final = np.where(hits["BLOCK"], _BLOCK, final)
        final = np.where(allow, _APPROVE, final)
        final = np.where(deny, _BLOCK, final)
        decision = np.asarray(DECISIONS, dtype=object)[final]
        return RuleOutcome(decision=decision, fired=fired, reasons=reasons, alert=alert)

    def _list_hits(
        self,
        lists: dict[str, frozenset[str]],
        kind: str,
        view: Columns,
        note: Callable[[np.ndarray, str, str], None],
    ) -> np.ndarray:
        hit = np.zeros(view.n, dtype=bool)
        for name in LIST_FIELDS:
            ids = lists.get(name)
            if not ids:
                continue
            try:
                column = view[name]
            except RulesError as exc:
                raise exc.within(source=self.source) from None
            if column.dtype != object:
                raise RulesError(
                    f"column {name!r} must hold text ids for the {kind} list", source=self.source
                )
            mask = np.asarray(pd.Series(column, dtype=object).isin(ids), dtype=bool)
            if mask.any():
                note(mask, f"{kind}_list:{name}", f"{name} is on the {kind} list")
                hit |= mask
        return hit


EMPTY_RULES: Final = RuleSet.empty()
