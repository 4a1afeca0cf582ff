"""``RuleGuardRepository``: the rule guard's baselines and guards, the window of decisions it counts, and
their entries in the audit log.

A baseline is a rule's hits in a backtest of its rules version over the newest stored decisions (table
``rule_baselines``, one row per version and rule; a newer backtest of the version replaces them). A guard
(table ``rule_guards``) is a rule the guard moved to shadow: tripping one and re-enabling the rule are
each written with their audit entry in one transaction (actions ``guard`` by :data:`GUARD_ACTOR` and
``reenable`` by the admin, subject ``rule:<name>``). At most one guard per rule is in force, which a
partial unique index holds, so of several processes tripping the same rule at once exactly one does (and
raises the alert). Rows are never deleted: a released guard keeps who re-enabled the rule, when and why.
See :mod:`fraudstream.rules.guard` for what trips a rule.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fraudstream.storage import tables
from fraudstream.storage._audit import audited, write_audit
from fraudstream.storage.database import Database

_b, _g, _d = tables.rule_baselines, tables.rule_guards, tables.decisions

GUARD_ACTOR: Final = "rule-guard"
"""Who trips a rule, in the audit log."""


class GuardError(ValueError):
    """A re-enabling that cannot be done: ``status`` 404 (the rule is not guarded)."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Baseline:
    """Rule ``rule`` of rules version ``rules_version`` fired ``hits`` times in a backtest over
    ``decisions`` stored decisions of event times ``[period_start, period_end)``; ``note`` says why the
    figures cannot serve as its expected rate, when they cannot."""

    rules_version: str
    rule: str
    hits: int
    decisions: int
    computed_at: datetime
    computed_by: str
    period_start: datetime | None = None
    period_end: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class Window:
    """What the guard counts of the newest decisions of a rules version: ``decisions`` of them,
    ``after[rule]`` of them made after that rule's re-enabling, and ``fired``, the decision time and
    ``rules`` list of each one some rule (or list) fired on."""

    decisions: int
    after: dict[str, int]
    fired: list[tuple[datetime, list[str]]]


@dataclass(frozen=True)
class Guard:
    """Rule ``rule`` moved to shadow at ``tripped_at``, under rules version ``rules_version``, for
    firing ``hits`` times in ``decisions`` against ``expected_hits`` in ``expected_decisions`` at the
    limit ``multiple``; re-enabled when ``released_at`` is set."""

    id: int
    rule: str
    rules_version: str
    tripped_at: datetime
    hits: int
    decisions: int
    expected_hits: int
    expected_decisions: int
    multiple: float
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def in_force(self) -> bool:
        return self.released_at is None

    def audited(self) -> dict[str, Any]:
        """What the audit log keeps of it (times as ISO 8601 text)."""
        return audited(self)


_utc = tables.as_utc


def _guard(row: Any) -> Guard:
    values = dict(row)  # its times come back aware UTC, as every UTCDateTime column's
    values["id"] = int(values["id"])
    return Guard(**values)


def _baseline(row: Any) -> Baseline:
    return Baseline(**dict(row))


class RuleGuardRepository:
    """Baselines, guards and the decisions the guard counts; every trip and re-enabling audited."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- baselines ---------------------------------------------------------------------------------

    def save_baselines(self, rules_version: str, baselines: Sequence[Baseline]) -> None:
        """Make ``baselines`` those of ``rules_version``, replacing those it had, in one transaction."""
        if any(b.rules_version != rules_version for b in baselines):
            raise ValueError(f"every baseline must be of rules version {rules_version}")
        with self._db.write() as conn:
            conn.execute(delete(_b).where(_b.c.rules_version == rules_version))
            if baselines:
                conn.execute(insert(_b), [asdict(b) for b in baselines])

    def baselines(self, rules_version: str) -> dict[str, Baseline]:
        """The baselines of ``rules_version``, by rule; empty when it was never backtested."""
        query = select(_b).where(_b.c.rules_version == rules_version)
        with self._db.read() as conn:
            return {r["rule"]: _baseline(r) for r in conn.execute(query).mappings()}

    def newest_span(self, decisions: int) -> tuple[datetime, datetime] | None:
        """The event times ``[start, end)`` that hold the newest ``decisions`` stored decisions (a few
        more when several share the oldest time); ``None`` when none is stored."""
        if decisions < 1:
            raise ValueError("decisions must be at least 1")
        nth = select(_d.c.timestamp).order_by(_d.c.timestamp.desc()).offset(decisions - 1).limit(1)
        with self._db.read() as conn:
            first, last = conn.execute(select(func.min(_d.c.timestamp), func.max(_d.c.timestamp))).one()
            if last is None:
                return None
            start = conn.execute(nth).scalar()
        begin = _utc(start if start is not None else first)
        end = _utc(last)
        assert begin is not None and end is not None
        return begin, end + timedelta(microseconds=1)

    # -- the window --------------------------------------------------------------------------------

    def window(self, size: int, rules_version: str, since: Mapping[str, datetime] | None = None) -> Window:
        """Of the newest ``size`` decisions stored (by the time they were decided), those made under
        ``rules_version``: how many, how many after each time of ``since`` (a rule's re-enabling), and
        the decision time and ``rules`` list of each one some rule fired on. The decisions nothing
        fired on, most of them, are counted in the database and never read."""
        if size < 1:
            raise ValueError("size must be at least 1")
        since = dict(since or {})
        newest = (
            select(_d.c.decided_at, _d.c.rules_version, _d.c.rules)
            .order_by(_d.c.decided_at.desc(), _d.c.transaction_id.desc())
            .limit(size)
            .subquery()
        )
        mine = newest.c.rules_version == rules_version
        after = [
            func.coalesce(func.sum(case((newest.c.decided_at > at, 1), else_=0)), 0) for at in since.values()
        ]
        fired = select(newest.c.decided_at, newest.c.rules).where(
            mine, func.json_array_length(newest.c.rules) > 0
        )
        with self._db.read() as conn:
            total, *later = conn.execute(select(func.count(), *after).where(mine)).one()
            rows = [(_utc(at) or at, list(hits)) for at, hits in conn.execute(fired)]
        return Window(int(total), {rule: int(n) for rule, n in zip(since, later, strict=True)}, rows)

    # -- guards ------------------------------------------------------------------------------------

    def trip(
        self,
        rule: str,
        rules_version: str,
        *,
        hits: int,
        decisions: int,
        expected_hits: int,
        expected_decisions: int,
        multiple: float,
    ) -> Guard | None:
        """Guard ``rule`` now, with its audit entry; ``None`` when it is guarded already (by another
        process meanwhile, too): only the caller that gets a guard back tells anyone."""
        values = {
            "rule": rule, "rules_version": rules_version, "tripped_at": datetime.now(UTC), "hits": hits,
            "decisions": decisions, "expected_hits": expected_hits, "expected_decisions": expected_decisions,
            "multiple": float(multiple),
        }  # fmt: skip
        try:
            with self._db.write() as conn:
                guard_id = conn.execute(insert(_g).values(**values).returning(_g.c.id)).scalar_one()
                guard = Guard(id=int(guard_id), **values)  # type: ignore[arg-type]
                write_audit(conn, GUARD_ACTOR, "guard", f"rule:{rule}", None, guard.audited())
        except IntegrityError:
            return None
        return guard

    def reenable(self, rule: str, actor: str, reason: str) -> Guard:
        """Release the guard in force on ``rule`` now, by ``actor`` for ``reason``, with its audit entry:
        the rule acts again. :class:`GuardError` 404 when it is not guarded."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            row = (
                conn.execute(select(_g).where(_g.c.rule == rule, _g.c.released_at.is_(None)))
                .mappings()
                .first()
            )
            if row is None:
                raise GuardError(f"rule {rule!r} is not guarded")
            before = _guard(row)
            released = conn.execute(
                update(_g)
                .where(_g.c.id == before.id, _g.c.released_at.is_(None))
                .values(released_at=now, released_by=actor, release_reason=reason)
            ).rowcount
            if released != 1:  # re-enabled by another call meanwhile
                raise GuardError(f"rule {rule!r} is not guarded")
            after = _guard(conn.execute(select(_g).where(_g.c.id == before.id)).mappings().one())
            write_audit(conn, actor, "reenable", f"rule:{rule}", before.audited(), after.audited())
        return after

    def in_force(self) -> builtins.list[Guard]:
        """The guards in force (the rules moved to shadow now), oldest first."""
        query = select(_g).where(_g.c.released_at.is_(None)).order_by(_g.c.id)
        with self._db.read() as conn:
            return [_guard(r) for r in conn.execute(query).mappings()]

    def history(self, rule: str | None = None, limit: int = 100) -> builtins.list[Guard]:
        """Guards in force or released, newest first; optionally of one rule."""
        query = select(_g).order_by(_g.c.id.desc()).limit(limit)
        if rule is not None:
            query = query.where(_g.c.rule == rule)
        with self._db.read() as conn:
            return [_guard(r) for r in conn.execute(query).mappings()]

    def released(self) -> dict[str, datetime]:
        """When each rule was last re-enabled: its live count starts after that."""
        query = (
            select(_g.c.rule, func.max(_g.c.released_at))
            .where(_g.c.released_at.is_not(None))
            .group_by(_g.c.rule)
        )
        with self._db.read() as conn:
            return {rule: at for rule, at in ((r, _utc(t)) for r, t in conn.execute(query)) if at is not None}

    def stamp(self) -> tuple[int, int]:
        """Changes with every guard tripped or released (the newest id, the number released): one cheap
        read, so running processes can poll it every few seconds."""
        query = select(func.coalesce(func.max(_g.c.id), 0), func.count(_g.c.released_at))
        with self._db.read() as conn:
            newest, released = conn.execute(query).one()
        return int(newest), int(released)


__all__ = ["GUARD_ACTOR", "Baseline", "Guard", "GuardError", "RuleGuardRepository", "Window"]
