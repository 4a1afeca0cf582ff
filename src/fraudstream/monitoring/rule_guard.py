"""The rule guard at work in a running process: it counts the rules' hits in the stored decisions, moves
a rule firing far above its backtested rate to shadow and raises an alert naming it.

:class:`RuleGuard` reads everything it judges from the database (the rules version's baselines, the
window of the newest stored decisions, the guards in force and the rules' last re-enabling), so every
server and worker sharing the database judges the same figures, and a trip is stored there for all of
them to apply (:class:`~fraudstream.rules.guard.LiveGuards`). Several processes may trip one rule at the
same moment: the database keeps one guard, and only the process whose guard was stored audits it and
raises the alert. What trips a rule is in :mod:`fraudstream.rules.guard`.

A process checks after the batches it decides, at most every ``check_interval`` seconds, on a thread of
its own (:meth:`RuleGuard.observe`, a decider observer): deciding never waits on the check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.events.decision import DecisionColumns
from fraudstream.rules.guard import TRIPPED, Limits, Verdict, count_hits, judge
from fraudstream.rules.ruleset import RuleSet
from fraudstream.storage.guard import Guard, RuleGuardRepository

log = logging.getLogger(__name__)

RULE_GUARD: Final = "rule_guard"
"""The kind of the alerts the guard raises; their entity is ``rule:<name>``."""


def guard_limits(settings: Settings) -> Limits:
    """The limits ``FRAUD_RULE_GUARD_*`` set."""
    return Limits(
        multiple=settings.rule_guard_multiple,
        min_hits=settings.rule_guard_min_hits,
        window=settings.rule_guard_window,
        exempt=settings.rule_guard_exempt_rules,
    )


@dataclass(frozen=True)
class GuardStatus:
    """Each rule of the version in use against its baseline, as the guard sees it now."""

    rules_version: str
    decisions: int
    """Of the window's decisions, those made under ``rules_version``."""
    verdicts: list[Verdict]
    in_force: list[Guard] = field(default_factory=list)
    """Every guard in force, also on rules this version lacks."""


class Judged(Protocol):
    """What :func:`guard_status` reads: :class:`~fraudstream.storage.guard.RuleGuardRepository`."""

    def baselines(self, rules_version: str) -> Any: ...

    def in_force(self) -> list[Guard]: ...

    def released(self) -> Any: ...

    def window(self, size: int, rules_version: str, since: Any) -> Any: ...


def guard_status(repository: Judged, rules: RuleSet, limits: Limits) -> GuardStatus:
    """The guard's view of ``rules`` (the version in use, without guards applied) now."""
    guards = repository.in_force()
    released = repository.released()
    window = repository.window(limits.window, rules.version, released)
    live = count_hits(window, [r.name for r in rules.rules], released)
    verdicts = judge(rules, repository.baselines(rules.version), live, {g.rule for g in guards}, limits)
    return GuardStatus(rules.version, window.decisions, verdicts, guards)


def guard_alert(guard: Guard, verdict: Verdict) -> Alert:
    """The alert naming a rule the guard moved to shadow, and why."""
    name = guard.rule
    return Alert(
        kind=RULE_GUARD,
        entity=f"rule:{name}",
        transaction_id=None,
        message=(
            f"Rule {name} moved to shadow by the rule guard: it {verdict.says} under rules version "
            f"{guard.rules_version}; the guard trips at {guard.multiple:g}x. It is still evaluated and "
            f"recorded (as shadow:{name}) but decides nothing until an admin re-enables it: "
            f"POST /v1/rules/guard/{name}/reenable, or fraudstream rules reenable {name}."
        ),
        details={
            "rule": name,
            "action": verdict.action,
            "rules_version": guard.rules_version,
            "guard_id": guard.id,
            "hits": guard.hits,
            "decisions": guard.decisions,
            "rate": verdict.live.rate,
            "expected_hits": guard.expected_hits,
            "expected_decisions": guard.expected_decisions,
            "expected_rate": verdict.expected_rate,
            "multiple": guard.multiple,
        },
    )


class RuleGuard:
    """Trips the rules of the version ``rules`` gives (without guards applied) that fire far above their
    baseline: stores each guard (audited), calls ``on_trip`` (to apply it in this process at once) and
    hands the alerts to ``on_alerts``. With ``enabled`` false it only reports (:meth:`status`)."""

    def __init__(
        self,
        repository: RuleGuardRepository,
        rules: Callable[[], RuleSet],
        limits: Limits,
        *,
        on_alerts: Callable[[list[Alert]], None] | None = None,
        on_trip: Callable[[], object] | None = None,
        enabled: bool = True,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.repository = repository
        self.limits = limits
        self.enabled = enabled
        self.check_interval = check_interval
        self.last_error: str | None = None
        self._rules, self._on_alerts, self._on_trip = rules, on_alerts, on_trip
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        self._checking = False
        self._checked = clock()

    def status(self) -> GuardStatus:
        """Each rule of the version in use against its baseline now."""
        return guard_status(self.repository, self._rules(), self.limits)

    def observe(self, decided: DecisionColumns) -> None:
        """A decider observer: check once ``check_interval`` has passed since the last check (on a
        thread of its own, unless built without ``background``)."""
        if not self.enabled or self._checking or self._clock() - self._checked < self.check_interval:
            return
        with self._lock:
            if self._checking or self._clock() - self._checked < self.check_interval:
                return
            self._checking = True
        if self._background:
            threading.Thread(target=self._check_and_release, name="rule-guard-check", daemon=True).start()
        else:
            self._check_and_release()

    def check(self) -> list[Guard]:
        """Judge the rules now and trip those far above their baseline; the guards this call stored."""
        if not self.enabled:
            return []
        status = self.status()
        tripped: list[tuple[Guard, Verdict]] = []
        for verdict in status.verdicts:
            if verdict.state != TRIPPED or verdict.expected is None:
                continue
            guard = self.repository.trip(
                verdict.rule,
                status.rules_version,
                hits=verdict.live.hits,
                decisions=verdict.live.decisions,
                expected_hits=verdict.expected.hits,
                expected_decisions=verdict.expected.decisions,
                multiple=self.limits.multiple,
            )
            if guard is not None:
                log.warning("rule guard: rule %s moved to shadow: it %s", guard.rule, verdict.says)
                tripped.append((guard, verdict))
        if tripped:
            if self._on_trip is not None:
                self._on_trip()
            if self._on_alerts is not None:
                self._on_alerts([guard_alert(g, v) for g, v in tripped])
        return [g for g, _ in tripped]

    def _check_and_release(self) -> None:
        try:
            self.check()
            self.last_error = None
        except Exception as exc:  # the database unreachable, say: try again at the next check
            problem = f"cannot check the rules: {exc}"
            if problem != self.last_error:
                log.warning("rule guard: %s", problem)
            self.last_error = problem
        finally:
            self._checked = self._clock()
            self._checking = False


class Observed(Protocol):
    """What :func:`watch_rules` follows: every batch of new decisions as it is stored (a
    :class:`~fraudstream.pipeline.decider.Decider`)."""

    def add_observer(self, observe: Callable[[DecisionColumns], None]) -> None: ...


def watch_rules(
    decider: Observed,
    repository: RuleGuardRepository,
    rules: Callable[[], RuleSet],
    settings: Settings,
    *,
    on_alerts: Callable[[list[Alert]], None] | None = None,
    on_trip: Callable[[], object] | None = None,
) -> RuleGuard:
    """A :class:`RuleGuard` with the limits and switch of ``settings``, checking every
    FRAUD_RULES_POLL_SECONDS after the batches ``decider`` decides."""
    guard = RuleGuard(
        repository,
        rules,
        guard_limits(settings),
        on_alerts=on_alerts,
        on_trip=on_trip,
        enabled=settings.rule_guard,
        check_interval=settings.rules_poll_seconds,
    )
    decider.add_observer(guard.observe)
    return guard


__all__ = [
    "RULE_GUARD",
    "GuardStatus",
    "RuleGuard",
    "guard_alert",
    "guard_limits",
    "guard_status",
    "watch_rules",
]
