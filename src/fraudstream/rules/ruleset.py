"""Analysts' rules and allow/deny lists, applied to a whole batch on top of the model's decisions.

A :class:`RuleSet` is immutable once built (by :func:`fraudstream.rules.parse_rules` or
:func:`fraudstream.rules.load_rules`), so a reloader can swap one in while other threads score with
the previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np

from fraudstream.events.transaction import DECISIONS
from fraudstream.expr.columns import Columns, isin_text
from fraudstream.expr.expression import CompiledExpr
from fraudstream.rules.errors import RulesError
from fraudstream.rules.snoozes import NO_SNOOZES, SNOOZED_PREFIX, Snoozes

if TYPE_CHECKING:
    from fraudstream.rules.aggregates import Aggregates

"""Decisions in increasing severity: a rule or model can only push a row up this scale, except
APPROVE rules and the allow list, which override it on purpose."""

LIST_FIELDS: Final = ("customer_id", "device_id", "ip_address", "merchant_id")

_RANK: Final = {name: i for i, name in enumerate(DECISIONS)}
_APPROVE, _BLOCK = _RANK["APPROVE"], _RANK["BLOCK"]
_RAISING: Final = tuple(_RANK[name] for name in ("FLAG", "CHALLENGE", "HOLD"))
"""The actions whose rules raise a decision to at least themselves (step 5 of :meth:`RuleSet.apply`)."""
_DECISION_VALUES: Final = np.asarray(DECISIONS, dtype=object)


@dataclass(frozen=True)
class Rule:
    """A named condition with the decision it asks for and the reason shown to reviewers.

    ``alert`` marks rules whose hits should page someone, not only change the decision. A ``shadow``
    rule is evaluated and its hits recorded, but it changes no decision, adds no reason and raises no
    alert: a way to watch a new rule on live traffic before it acts.
    """

    name: str
    when: str
    action: str
    reason: str
    expr: CompiledExpr
    alert: bool = False
    shadow: bool = False

    def __post_init__(self) -> None:
        if self.action not in DECISIONS:
            raise RulesError(f"action {self.action!r} is not one of {', '.join(DECISIONS)}", rule=self.name)


@dataclass
class RuleOutcome:
    """Per-row result of :meth:`RuleSet.apply`.

    ``decision`` holds outcome strings of :data:`DECISIONS` (object array); ``fired`` the
    names of the rules that fired on each row, after ``"deny_list:<field>"`` and
    ``"allow_list:<field>"`` entries for list hits; ``reasons`` the matching reasons, in the same
    order; ``alert`` whether a fired rule asks for an alert or the row hit the deny list.
    ``shadow`` holds, per row, the shadow rules that fired as ``"shadow:<name>"`` (``None`` when the
    rule set has none): they are in no other field. ``snoozed`` holds, per row, the rules that fired
    but a snooze covers, as ``"snoozed:<name>"`` (``None`` when none did): in no other field either.
    """

    decision: np.ndarray
    fired: list[list[str]]
    reasons: list[list[str]]
    alert: np.ndarray
    shadow: list[list[str]] | None = None
    snoozed: list[list[str]] | None = None

    @property
    def recorded(self) -> list[list[str]]:
        """What a decision stores as its rules: the rules that fired, the snoozed ones, then the
        shadow rules that fired."""
        out = self.fired
        for extra in (self.snoozed, self.shadow):
            if extra is not None:
                out = [f + e if e else f for f, e in zip(out, extra, strict=True)]
        return out


class _ListEntry(NamedTuple):
    field: str
    ids: frozenset[str]
    label: str
    reason: str


class _Plan(NamedTuple):
    """What :meth:`RuleSet.apply` needs, worked out once per (immutable) rule set."""

    deny: tuple[_ListEntry, ...]
    allow: tuple[_ListEntry, ...]
    rules: tuple[tuple[Rule, int], ...]
    shadow: tuple[Rule, ...]


SHADOW_PREFIX: Final = "shadow:"
"""How a shadow rule's hit is named among a decision's rules: rule names cannot contain ``:``."""


def _list_entries(lists: dict[str, frozenset[str]], kind: str) -> tuple[_ListEntry, ...]:
    return tuple(
        _ListEntry(name, ids, f"{kind}_list:{name}", f"{name} is on the {kind} list")
        for name in LIST_FIELDS
        if (ids := lists.get(name))
    )


def _ranks(model: np.ndarray) -> np.ndarray:
    """Each decision's index in :data:`DECISIONS`; ``ValueError`` naming up to five unknown ones."""
    listed = model.tolist()
    rank = np.fromiter((_RANK.get(v, -1) if isinstance(v, str) else -1 for v in listed), np.int8, len(listed))
    if (rank < 0).any():
        bad = sorted({str(v) for v, r in zip(listed, rank.tolist(), strict=True) if r < 0})[:5]
        raise ValueError(f"model decisions must be one of {', '.join(DECISIONS)}; got {bad}")
    return rank


def _any(mask: np.ndarray) -> bool:
    return bool(mask.any())


def _noted(hits: list[list[str]] | None, mask: np.ndarray, label: str, n: int) -> list[list[str]]:
    """``hits`` (or ``n`` rows sharing one empty list) with ``label`` added to the rows ``mask`` holds;
    a row's list is replaced, never appended to, so the shared empty one stays empty."""
    nothing: list[str] = []
    out = [nothing] * n if hits is None else hits
    for i in np.flatnonzero(mask).tolist():
        out[i] = [*out[i], label]
    return out


@dataclass(frozen=True, eq=False)
class RuleSet:
    """Rules in file order plus allow and deny lists of ids per field (see :data:`LIST_FIELDS`).

    ``version`` is a short hash of the rules file, recorded with every decision so that a decision
    can be traced to the exact rules that made it; ``source`` names the file in error messages.
    ``snoozes`` are the analysts' snoozes :meth:`apply` honours (see :mod:`fraudstream.rules.snoozes`):
    not part of the version, since they name entities rather than change a rule. ``aggregates`` are
    the features the rules declare for themselves (see :mod:`fraudstream.rules.aggregates`): the
    columns :meth:`apply` is given then carry them beside the model's features.
    """

    rules: list[Rule] = field(default_factory=list)
    allow: dict[str, frozenset[str]] = field(default_factory=dict)
    deny: dict[str, frozenset[str]] = field(default_factory=dict)
    version: str = "empty"
    source: str = "<rules>"
    snoozes: Snoozes = NO_SNOOZES
    aggregates: Aggregates | None = None

    @classmethod
    def empty(cls) -> RuleSet:
        """No rules and no lists: the model decides alone."""
        return cls()

    def __len__(self) -> int:
        return len(self.rules)

    @cached_property
    def names(self) -> frozenset[str]:
        """Every column :meth:`apply` will read, so a caller can check a batch before scoring."""
        read = {name for rule in self.rules for name in rule.expr.names}
        read |= {f for lists in (self.allow, self.deny) for f, ids in lists.items() if ids}
        return frozenset(read)

    def snoozed(self, snoozes: Snoozes) -> RuleSet:
        """These rules honouring ``snoozes`` instead of their own."""
        return self if snoozes is self.snoozes else replace(self, snoozes=snoozes)

    @cached_property
    def approving(self) -> frozenset[str]:
        """Names of the rules whose action is APPROVE: their hits lower a decision's risk."""
        return frozenset(rule.name for rule in self.rules if rule.action == "APPROVE")

    def apply(self, columns: Mapping[str, Any], model_decision: np.ndarray) -> RuleOutcome:
        """Combine the model's decisions with the lists and rules, for every row of a batch at once.

        Precedence, highest first:

        1. a deny-list hit → BLOCK;
        2. an allow-list hit → APPROVE (known-good customers are never stopped by rules or model);
        3. any BLOCK rule fired → BLOCK;
        4. any APPROVE rule fired → APPROVE: a rule may override the model downwards, e.g. to
           silence a known false-positive pattern;
        5. otherwise the most severe of the model's decision and the actions of the FLAG, CHALLENGE
           and HOLD rules that fired, in the order APPROVE < FLAG < CHALLENGE < HOLD < BLOCK.

        Every rule is evaluated on every row, so ``fired`` and ``reasons`` list all hits even when a
        list decided the row; that is what reviewers want to see. Shadow rules take no part in any of
        this: their hits go to ``shadow`` alone. Neither do hits a snooze covers (the row's
        ``timestamp`` before the end of a snooze of the rule for the row's customer, device, IP or
        merchant): they go to ``snoozed`` alone. ``columns`` maps names to arrays
        of the batch's length (numbers as floats with NaN for missing, text as object arrays with
        ``None``); ``model_decision`` holds an outcome of :data:`DECISIONS` per row (a score band can
        make the model's decision a CHALLENGE or a HOLD).

        A batch of one row is as common as one of thousands, so the fixed cost matters as much as the
        cost per row: only the columns the rules read are converted, and the masks of actions and
        lists that nothing fired are never built.
        """
        model = np.asarray(model_decision)
        if model.ndim != 1:
            raise ValueError(f"model_decision must be one-dimensional, not of shape {model.shape}")
        n = model.shape[0]
        rank = _ranks(model)
        plan = self._plan
        view = Columns(columns, n)
        # Most rows fire nothing: they share one empty list, and a row gets lists of its own on a hit.
        nothing: list[str] = []
        fired: list[list[str]] = [nothing] * n
        reasons: list[list[str]] = [nothing] * n

        def note(mask: np.ndarray, label: str, reason: str) -> None:
            for i in np.flatnonzero(mask).tolist():
                if fired[i] is nothing:
                    fired[i], reasons[i] = [label], [reason]
                else:
                    fired[i].append(label)
                    reasons[i].append(reason)

        # Masks are only read here, never written (they may be the batch's own columns), and an
        # action nobody fired costs nothing: the common case, for small batches above all.
        deny = self._list_hits(plan.deny, "deny", view, note)
        allow = self._list_hits(plan.allow, "allow", view, note)
        hits: list[np.ndarray | None] = [None] * len(DECISIONS)
        alert = deny
        snoozes = self.snoozes
        snoozed: list[list[str]] | None = None
        for rule, action in plan.rules:
            mask = self._mask(rule, view, n)
            if snoozes and _any(mask):
                quiet = snoozes.quiet(rule.name, view, mask)
                if quiet is not None:
                    snoozed = _noted(snoozed, quiet, SNOOZED_PREFIX + rule.name, n)
                    mask = mask & ~quiet
            if _any(mask):
                note(mask, rule.name, rule.reason)
                before = hits[action]
                hits[action] = mask if before is None else before | mask
                if rule.alert:
                    alert = mask if alert is None else alert | mask

        shadow = self._shadow_hits(plan.shadow, view, n) if plan.shadow else None
        final: np.ndarray = rank
        approved, blocked = hits[_APPROVE], hits[_BLOCK]
        for action in _RAISING:
            raised = hits[action]
            if raised is not None:
                final = np.maximum(final, np.where(raised, action, _APPROVE))
        for action, where in ((_APPROVE, approved), (_BLOCK, blocked), (_APPROVE, allow), (_BLOCK, deny)):
            if where is not None:
                final = np.where(where, action, final)
        decision = _DECISION_VALUES[final]
        flags = np.zeros(n, dtype=bool) if alert is None else np.array(alert, dtype=bool)
        return RuleOutcome(
            decision=decision, fired=fired, reasons=reasons, alert=flags, shadow=shadow, snoozed=snoozed
        )

    @cached_property
    def _plan(self) -> _Plan:
        return _Plan(
            deny=_list_entries(self.deny, "deny"),
            allow=_list_entries(self.allow, "allow"),
            rules=tuple((rule, _RANK[rule.action]) for rule in self.rules if not rule.shadow),
            shadow=tuple(rule for rule in self.rules if rule.shadow),
        )

    def _mask(self, rule: Rule, view: Columns, n: int) -> np.ndarray:
        """Which of the ``n`` rows ``rule`` fires on; an error evaluating it names the rule."""
        try:
            mask = rule.expr.mask(view)
        except RulesError as exc:
            raise exc.within(rule=rule.name, source=self.source) from None
        return mask if mask.shape == (n,) else np.broadcast_to(mask, (n,))

    def _shadow_hits(self, rules: tuple[Rule, ...], view: Columns, n: int) -> list[list[str]]:
        """Per row, ``"shadow:<name>"`` for each shadow rule that fired, in file order."""
        hits: list[list[str]] | None = None
        for rule in rules:
            mask = self._mask(rule, view, n)
            if _any(mask):
                hits = _noted(hits, mask, SHADOW_PREFIX + rule.name, n)
        return [[]] * n if hits is None else hits

    def _list_hits(
        self,
        entries: tuple[_ListEntry, ...],
        kind: str,
        view: Columns,
        note: Callable[[np.ndarray, str, str], None],
    ) -> np.ndarray | None:
        """Rows on any of these lists, or ``None`` when none is (or there are no lists)."""
        hit: np.ndarray | None = None
        for entry in entries:
            try:
                column = view[entry.field]
            except RulesError as exc:
                raise exc.within(source=self.source) from None
            if column.dtype != object:
                raise RulesError(
                    f"column {entry.field!r} must hold text ids for the {kind} list", source=self.source
                )
            mask = isin_text(column, entry.ids)
            if _any(mask):
                note(mask, entry.label, entry.reason)
                hit = mask if hit is None else hit | mask
        return hit


EMPTY_RULES: Final = RuleSet.empty()
