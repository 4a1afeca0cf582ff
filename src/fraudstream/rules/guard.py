"""The rule guard: a rule that suddenly fires far above its backtested rate is moved to shadow.

**Expected rate.** Each rule of a rules version has a baseline: its hits in a backtest of that version
over the newest stored decisions (kept in storage, see :mod:`fraudstream.storage.guard`). A rule the
backtest never saw fire counts as firing once there, so a short or quiet history never makes a rate of
zero that any hit would exceed. A rule without a usable baseline (the version was never backtested, the
backtest found no decisions, or the rule reads a name no stored decision logged) is never tripped, and
its :class:`Verdict` says why.

**Live rate.** Counted from the stored decisions themselves, whose ``rules`` list names each rule that
fired (``<rule>``, ``shadow:<rule>`` or ``snoozed:<rule>``: its condition held, whatever it then did):
of the newest ``window`` decisions stored, those made under the version in use, so every process on the
database counts the same decisions, and a new version starts from none. The window is a count of
decisions, not a span of time. A rule re-enabled by an admin counts only the decisions made after that,
so it is not tripped again by the hits that tripped it.

**Trip.** An acting rule (not shadow, not exempt, not guarded already) trips when its hits in the window
reach ``min_hits`` and its rate there is at least ``multiple`` times its expected rate (:func:`judge`).
A tripped rule is guarded: :func:`guarded` makes it a shadow rule of the same version, so it is still
evaluated and its hits recorded as ``shadow:<rule>``, and it decides nothing. :class:`LiveGuards`
follows the stored guards in every process, and :class:`GuardedRules` hands the scorer the live rules
with them applied; no new rules version is saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Protocol

from fraudstream.rules._polled import Combined, Polled
from fraudstream.rules.ruleset import SHADOW_PREFIX, Rule, RuleSet
from fraudstream.rules.snoozes import SNOOZED_PREFIX

GUARDED: Final = "guarded"
"""Moved to shadow by the guard: decides nothing until an admin re-enables it."""
TRIPPED: Final = "tripped"
"""Far above its expected rate now: the guard moves it to shadow at its next check."""
WATCHED: Final = "watched"
"""Has a baseline and fires within its limit."""
NO_BASELINE: Final = "no_baseline"
"""Has no usable baseline: never tripped."""
SHADOW: Final = "shadow"
"""A shadow rule of the version: it decides nothing, so there is nothing to guard."""
EXEMPT: Final = "exempt"
"""Named in the exemptions: never tripped."""
STATES: Final = (GUARDED, TRIPPED, WATCHED, NO_BASELINE, SHADOW, EXEMPT)


@dataclass(frozen=True)
class Limits:
    """When a rule trips: at least ``min_hits`` hits among the newest ``window`` decisions, at a rate
    at least ``multiple`` times its expected rate; the rules named in ``exempt`` never do."""

    multiple: float = 5.0
    min_hits: int = 50
    window: int = 10_000
    exempt: frozenset[str] = frozenset()


class Expected(Protocol):
    """A rule's baseline as :func:`judge` reads it (:class:`~fraudstream.storage.guard.Baseline`)."""

    @property
    def hits(self) -> int: ...

    @property
    def decisions(self) -> int: ...

    @property
    def note(self) -> str | None: ...


def expected_rate(expected: Expected) -> float | None:
    """The rate the rule is expected to fire at: its backtest hits (at least one) over the backtest's
    decisions; ``None`` when the baseline is not usable (a note says why, or it counted no decision)."""
    if expected.note is not None or expected.decisions <= 0:
        return None
    return max(expected.hits, 1) / expected.decisions


@dataclass(frozen=True)
class Live:
    """A rule's hits among the window's decisions it is counted over."""

    hits: int = 0
    decisions: int = 0

    @property
    def rate(self) -> float | None:
        return self.hits / self.decisions if self.decisions else None


@dataclass(frozen=True)
class Verdict:
    """One rule's standing: its state (one of :data:`STATES`), live and expected counts, and a sentence."""

    rule: str
    action: str
    state: str
    live: Live
    expected: Expected | None
    says: str

    @property
    def expected_rate(self) -> float | None:
        return None if self.expected is None else expected_rate(self.expected)


def rule_of(label: str) -> str:
    """The rule a decision's ``rules`` entry names: ``shadow:big`` and ``snoozed:big`` are ``big``
    (list hits, ``deny_list:<field>``, name no rule and come back as they are)."""
    for prefix in (SHADOW_PREFIX, SNOOZED_PREFIX):
        if label.startswith(prefix):
            return label[len(prefix) :]
    return label


class Counted(Protocol):
    """The window as :func:`count_hits` reads it: :class:`~fraudstream.storage.guard.Window`."""

    @property
    def decisions(self) -> int: ...

    @property
    def after(self) -> Mapping[str, int]: ...

    @property
    def fired(self) -> Sequence[tuple[datetime, Sequence[str]]]: ...


def count_hits(
    window: Counted, names: Iterable[str], since: Mapping[str, datetime] | None = None
) -> dict[str, Live]:
    """Per rule named, its hits in ``window`` and the decisions it is counted over: all of them, or
    those after ``since[rule]`` (its re-enabling), which ``window.after`` counts."""
    since = since or {}
    hits = dict.fromkeys(names, 0)
    for at, fired in window.fired:
        for label in fired:
            name = rule_of(label)
            if name in hits:
                after = since.get(name)
                if after is None or at > after:
                    hits[name] += 1
    return {
        name: Live(n, window.after.get(name, 0) if name in since else window.decisions)
        for name, n in hits.items()
    }


def _share(value: float) -> str:
    return f"{value:.2%}"


def _firing(live: Live, expected: Expected, rate: float) -> str:
    backtested = f"{_share(rate)}: {expected.hits:,} hits in {expected.decisions:,} decisions"
    if live.rate is None:
        return f"has no decision counted yet (its backtested rate is {backtested})"
    return (
        f"fired on {live.hits:,} of the {live.decisions:,} decisions counted ({_share(live.rate)}, "
        f"{live.rate / rate:.1f}x its backtested rate of {backtested})"
    )


def _above(live: Live, expected: Expected, multiple: float) -> bool:
    """Whether ``live.hits / live.decisions >= multiple * max(expected.hits, 1) / expected.decisions``,
    compared as products so that a rate exactly at the limit is at it."""
    return live.hits * expected.decisions >= multiple * max(expected.hits, 1) * live.decisions


def judge(
    rules: RuleSet,
    expected: Mapping[str, Expected],
    live: Mapping[str, Live],
    guarded: Collection[str],
    limits: Limits,
) -> list[Verdict]:
    """Each rule of ``rules`` against its baseline, in file order (see the module's notes): the rules
    whose state is :data:`TRIPPED` are those to move to shadow now."""
    out: list[Verdict] = []
    for rule in rules.rules:
        seen = live.get(rule.name, Live())
        base = expected.get(rule.name)
        state, says = _standing(rule, seen, base, guarded, limits, rules.version)
        out.append(Verdict(rule.name, rule.action, state, seen, base, says))
    return out


def _standing(
    rule: Rule, seen: Live, base: Expected | None, guarded: Collection[str], limits: Limits, version: str
) -> tuple[str, str]:
    """One rule's state and the sentence saying why."""
    if rule.name in guarded:
        return GUARDED, "moved to shadow by the guard: it decides nothing until re-enabled"
    if rule.shadow:
        return SHADOW, "a shadow rule: it decides nothing, so the guard leaves it alone"
    if rule.name in limits.exempt:
        return EXEMPT, "exempt from the guard (FRAUD_RULE_GUARD_EXEMPT)"
    if base is None:
        return NO_BASELINE, f"no baseline: rules version {version} was not backtested"
    if base.note is not None:
        return NO_BASELINE, f"no baseline: {base.note}"
    rate = expected_rate(base)
    if rate is None:
        return NO_BASELINE, "no baseline: its backtest found no stored decisions"
    tripped = seen.hits >= limits.min_hits and _above(seen, base, limits.multiple)
    return (TRIPPED if tripped else WATCHED), _firing(seen, base, rate)


def guarded(rules: RuleSet, names: Collection[str]) -> RuleSet:
    """``rules`` with the acting rules named in ``names`` made shadow rules: the same version, lists and
    snoozes; ``rules`` itself when none of them is in it."""
    if not any(r.name in names and not r.shadow for r in rules.rules):
        return rules
    return replace(rules, rules=[replace(r, shadow=True) if r.name in names else r for r in rules.rules])


class GuardSource(Protocol):
    """Where :class:`LiveGuards` reads: :class:`~fraudstream.storage.guard.RuleGuardRepository`."""

    def stamp(self) -> object: ...

    def in_force(self) -> Sequence[_Named]: ...


class _Named(Protocol):
    @property
    def rule(self) -> str: ...


class LiveGuards:
    """The names of the rules guarded now, followed while running: the stored guards in force, read
    again when one is tripped or released anywhere (see :class:`~fraudstream.rules._polled.Polled`)."""

    def __init__(
        self,
        source: GuardSource,
        *,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self._polled = Polled(
            "rule guards",
            source.stamp,
            lambda _stamp: frozenset(g.rule for g in source.in_force()),
            frozenset[str](),
            check_interval=check_interval,
            clock=clock,
            background=background,
        )

    @property
    def last_error(self) -> str | None:
        """Why the guards in use may be out of date (the database could not be read), if so."""
        return self._polled.last_error

    def current(self) -> frozenset[str]:
        """The names guarded now."""
        return self._polled.current()

    def refresh(self) -> frozenset[str]:
        """Read the guards now, not at the next check: the process that changed one uses it at once."""
        return self._polled.refresh()


class GuardedRules(Combined[RuleSet, frozenset[str]]):
    """The rules ``rules`` gives with the guards ``guards`` gives applied (:func:`guarded`), as the
    scorer takes them; built again only when either side changed, so the rule set's worked-out plan
    is kept from one batch to the next."""

    def __init__(self, rules: Callable[[], RuleSet], guards: Callable[[], frozenset[str]]) -> None:
        super().__init__(rules, guards, guarded)


__all__ = [
    "EXEMPT",
    "GUARDED",
    "NO_BASELINE",
    "SHADOW",
    "STATES",
    "TRIPPED",
    "WATCHED",
    "Counted",
    "Expected",
    "GuardedRules",
    "Limits",
    "Live",
    "LiveGuards",
    "Verdict",
    "count_hits",
    "expected_rate",
    "guarded",
    "judge",
    "rule_of",
]
