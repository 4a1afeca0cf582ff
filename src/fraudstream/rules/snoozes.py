"""Rule snoozes: an analyst stops a rule from acting on one customer, device, IP address or merchant
until a given time.

A snoozed hit takes no part in the decision: it adds no reason, no alert and no severity, and the
decision records it among its rules as ``snoozed:<rule>``, so reviewers still see that the rule would
have fired. Whether a snooze covers a row is decided by the row's own timestamp (the data's time, not
the clock), so a replayed stream is decided as it was live.

:class:`Snoozes` is the immutable in-memory view :meth:`~fraudstream.rules.RuleSet.apply` reads (a dict
lookup per snoozed rule, field and hit row, nothing when no snooze names the rule);
:class:`LiveSnoozes` follows the stored snoozes while running (``store.snoozes``), and
:class:`SnoozedRules` hands the scorer the live rules with the live snoozes attached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import numpy as np

from fraudstream.rules._polled import Combined, Polled
from fraudstream.rules.errors import RulesError

if TYPE_CHECKING:
    from fraudstream.expr.columns import Columns


SNOOZE_FIELDS: Final = ("customer_id", "device_id", "ip_address", "merchant_id")
"""What a snooze can name: the entity fields every canonical transaction carries (there is no card
field; a card is the ``customer_id`` when the input mapping says so)."""

SNOOZED_PREFIX: Final = "snoozed:"
"""How a snoozed hit is named among a decision's rules: rule names cannot contain ``:``."""

MAX_DAYS: Final = 180
"""The longest snooze, in days: long enough for a reviewed customer's season, short enough to come back."""


class ActiveSnooze(Protocol):
    """What :meth:`Snoozes.of` reads of a stored snooze."""

    @property
    def rule(self) -> str: ...

    @property
    def field(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def until(self) -> datetime: ...


@dataclass(frozen=True)
class Snoozes:
    """Per rule, per field, value → the end of its snooze in seconds since the epoch (the latest one
    when several name the same value). ``stamp`` says which stored state this was built from."""

    by_rule: Mapping[str, tuple[tuple[str, Mapping[str, float]], ...]] = field(default_factory=dict)
    stamp: object = None

    @classmethod
    def of(cls, snoozes: Iterable[ActiveSnooze], stamp: object = None) -> Snoozes:
        """The view of these snoozes (not lifted), however many name the same rule and value."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for s in snoozes:
            values = table.setdefault(s.rule, {}).setdefault(s.field, {})
            until = s.until.timestamp()
            if until > values.get(s.value, -np.inf):
                values[s.value] = until
        return cls({rule: tuple(fields.items()) for rule, fields in table.items()}, stamp)

    def __bool__(self) -> bool:
        return bool(self.by_rule)

    def __len__(self) -> int:
        return sum(len(values) for fields in self.by_rule.values() for _, values in fields)

    def quiet(self, rule: str, view: Columns, mask: np.ndarray) -> np.ndarray | None:
        """Of the rows ``mask`` says ``rule`` fired on, those a snooze covers (their field's value is
        snoozed for the rule and their timestamp is before the snooze's end); ``None`` when none is."""
        fields = self.by_rule.get(rule)
        if fields is None:
            return None
        rows = np.flatnonzero(mask)
        covered: list[int] = []
        times: np.ndarray | None = None  # read only when a value is snoozed: most hits are not
        try:
            for name, until in fields:
                for j, value in enumerate(view[name][rows].tolist()):
                    end = until.get(value) if isinstance(value, str) else None
                    if end is not None:
                        if times is None:
                            times = view["timestamp"][rows]
                        if times[j] < end:
                            covered.append(j)
        except RulesError as exc:
            raise exc.within(rule=rule) from None
        if not covered:
            return None
        quiet = np.zeros(mask.shape[0], dtype=bool)
        quiet[rows[covered]] = True
        return quiet


NO_SNOOZES: Final = Snoozes()


class SnoozeSource(Protocol):
    """Where :class:`LiveSnoozes` reads: :class:`~fraudstream.storage.snoozes.SnoozeRepository`."""

    def stamp(self) -> object: ...

    def unlifted(self) -> Sequence[ActiveSnooze]: ...


class LiveSnoozes:
    """The stored snoozes that are not lifted, followed while running (see
    :class:`~fraudstream.rules._polled.Polled`): :meth:`current` asks the source for its stamp (which
    changes with every snooze set or lifted) at most every ``check_interval`` seconds and reads the
    snoozes again when it changed, on a short-lived thread with ``background`` (the default), so scoring
    never waits on the database. A failed read keeps the snoozes in use and is kept in
    :attr:`last_error`. :meth:`refresh` reads them now: the process that set or lifted a snooze uses it
    at once. Safe to share between threads.
    """

    def __init__(
        self,
        source: SnoozeSource,
        *,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        def read(stamp: object) -> Snoozes:
            return Snoozes.of(source.unlifted(), stamp)

        self._polled = Polled(
            "snoozes",
            source.stamp,
            read,
            NO_SNOOZES,
            check_interval=check_interval,
            clock=clock,
            background=background,
        )

    @property
    def check_interval(self) -> float:
        """Seconds between two looks at the stored snoozes, at most."""
        return self._polled.check_interval

    @property
    def last_error(self) -> str | None:
        """Why the snoozes in use may be out of date (the database could not be read), if so."""
        return self._polled.last_error

    def current(self) -> Snoozes:
        """The snoozes to apply now, read again if they changed since the last look."""
        return self._polled.current()

    def refresh(self) -> Snoozes:
        """Read the snoozes now if they changed, rather than at the next look."""
        return self._polled.refresh()


_R = TypeVar("_R", bound="Snoozable")


class Snoozable(Protocol):
    """Rules that can honour snoozes: :class:`~fraudstream.rules.RuleSet`."""

    def snoozed(self: _R, snoozes: Snoozes) -> _R: ...


class SnoozedRules(Combined[_R, Snoozes]):
    """The rules ``rules`` gives with the snoozes ``snoozes`` gives attached, as the scorer takes them.

    The combined rule set is built again only when either side changed, so the rule set's worked-out
    plan is kept from one batch to the next.
    """

    def __init__(self, rules: Callable[[], _R], snoozes: Callable[[], Snoozes]) -> None:
        super().__init__(rules, snoozes, _snoozed)


def _snoozed(rules: _R, snoozes: Snoozes) -> _R:
    return rules.snoozed(snoozes)


__all__ = [
    "MAX_DAYS",
    "NO_SNOOZES",
    "SNOOZED_PREFIX",
    "SNOOZE_FIELDS",
    "LiveSnoozes",
    "SnoozedRules",
    "Snoozes",
]
