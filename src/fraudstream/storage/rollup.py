"""Decisions counted per minute as they are stored, so that a chart over hours never reads the decisions.

The dashboard asks for decisions per time bucket and the score histogram every couple of seconds.
Grouping the window's decision rows took 4–9 s over 872,795 decisions on SQLite and grows with traffic.
``decision_minutes`` holds, per minute, outcome and score bin, the number of decisions and their total
latency's count, sum and maximum: added to in the transaction that stores the decisions, only for
those stored for the first time, so a replayed decision never counts twice. A chart then reads at most
a row per minute, outcome and bin of its window; only a bucket that is not a whole number of minutes
groups the decisions themselves (:func:`series_from_decisions`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select

from fraudstream.storage import tables
from fraudstream.storage._dialect import Dialect
from fraudstream.storage._vendors import vendor

SCORE_BINS = 20
"""The score histogram's bins over [0, 1]."""
MINUTE = 60

_m = tables.decision_minutes
_d = tables.decisions


@cache
def _upsert(dialect: Dialect) -> str:
    """The driver's statement adding a :func:`minute_rows` row to the counts."""
    marks = ", ".join([dialect.param] * len(_m.c))
    return (
        f"INSERT INTO decision_minutes VALUES ({marks}) "
        "ON CONFLICT (minute, decision, score_bin) DO UPDATE SET "
        "decisions = decision_minutes.decisions + excluded.decisions, "
        "latency_count = decision_minutes.latency_count + excluded.latency_count, "
        "latency_sum = decision_minutes.latency_sum + excluded.latency_sum, "
        f"latency_max = {dialect.greatest('decision_minutes.latency_max', 'excluded.latency_max')}"
    )


def score_bin(probability: float) -> int:
    """The histogram bin of a probability, clamped to the bins; NaN goes to the top one, as
    PostgreSQL orders it."""
    if probability != probability:
        return SCORE_BINS - 1
    return int(min(max(probability * SCORE_BINS, 0.0), SCORE_BINS - 1.0))


def epoch(at: datetime) -> float:
    """Seconds since the epoch of a decision time, read as UTC when it has no zone, as it is stored."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def minute_rows(
    decisions: Iterable[tuple[float, str, float, float | None]],
) -> list[tuple[int, str, int, int, int, float, float | None]]:
    """``(epoch seconds decided, decision, probability, total latency as stored or None)`` counted per
    minute, outcome and score bin, as ``decision_minutes`` rows in key order (writers then lock them in
    one order, as :mod:`.bulk` does for keys)."""
    groups: dict[tuple[int, str, int], list[Any]] = {}
    for at, decision, probability, latency in decisions:
        key = (math.floor(at / MINUTE), decision, score_bin(probability))
        group = groups.get(key)
        if group is None:
            group = groups[key] = [0, 0, 0.0, None]
        group[0] += 1
        if latency is not None:
            group[1] += 1
            group[2] += latency
            group[3] = latency if group[3] is None else max(group[3], latency)
    return [(*key, *groups[key]) for key in sorted(groups)]


def batch_minute_rows(
    at: float, decisions: list[str], probabilities: np.ndarray, latency: float | None
) -> list[tuple[int, str, int, int, int, float, float | None]]:
    """:func:`minute_rows` for one scored batch, whose rows share their decision time and latency: the
    bins computed at once with numpy (clamped as :func:`score_bin` does, NaN and +inf to the top bin),
    the rows counted per outcome and bin in one pass, for one decision or a replay's hundreds of
    thousands. A group's latency sum adds its latency once per decision, as the rows would."""
    unit = np.clip(np.nan_to_num(probabilities, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    bins = np.minimum(unit * SCORE_BINS, SCORE_BINS - 1.0).astype(np.int64)  # truncates, as int() does
    counts = Counter(zip(decisions, bins.tolist(), strict=True))
    minute, timed = math.floor(at / MINUTE), latency is not None
    return [
        (
            minute,
            decision,
            score,
            n,
            n if timed else 0,
            _repeated_sum(latency, n) if latency is not None else 0.0,
            latency,
        )
        for (decision, score), n in sorted(counts.items())
    ]


def _repeated_sum(value: float, n: int) -> float:
    """``value`` added ``n`` times in turn (not ``n * value``, which can differ in the last bit)."""
    return float(np.cumsum(np.full(n, value))[-1])


def add_minutes(driver: Any, dialect: str, rows: list[tuple[Any, ...]]) -> None:
    """Add ``rows`` (from :func:`minute_rows`) to the counts, on a driver connection in the caller's
    transaction."""
    if rows:
        cursor = driver.cursor()
        try:
            cursor.executemany(_upsert(vendor(dialect)), rows)
        finally:
            cursor.close()


def minute_series(
    store: Any, since: datetime, bucket: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``(slot, decision, count, latency count, latency sum, latency max)`` per bucket of ``bucket``
    seconds (a whole number of minutes) and ``(bin, decision, count)`` per score bin, from the minute
    counts: the window starts at the whole minute that holds ``since``."""
    first = math.floor(since.timestamp() / MINUTE)
    slot = _m.c.minute // (bucket // MINUTE)
    in_window = _m.c.minute >= first
    by_time = (
        select(
            slot.label("slot"),
            _m.c.decision,
            func.sum(_m.c.decisions),
            func.sum(_m.c.latency_count),
            func.sum(_m.c.latency_sum),
            func.max(_m.c.latency_max),
        )
        .where(in_window)
        .group_by(slot, _m.c.decision)
    )
    by_score = (
        select(_m.c.score_bin, _m.c.decision, func.sum(_m.c.decisions))
        .where(in_window)
        .group_by(_m.c.score_bin, _m.c.decision)
    )
    return list(store.query(by_time)), list(store.query(by_score))


def series_from_decisions(
    store: Any, since: datetime, bucket: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """:func:`minute_series`'s rows computed from the decisions in the window, for any ``bucket``."""
    slot, score_bin = _slots(store, bucket)
    latency = _d.c.latency_ms["total"].as_float()
    in_window = _d.c.decided_at >= since
    by_time = (
        select(
            slot.label("slot"),
            _d.c.decision,
            func.count(),
            func.count(latency),
            func.sum(latency),
            func.max(latency),
        )
        .where(in_window)
        .group_by(slot, _d.c.decision)
    )
    by_score = (
        select(score_bin.label("bin"), _d.c.decision, func.count())
        .where(in_window)
        .group_by(score_bin, _d.c.decision)
    )
    return list(store.query(by_time)), list(store.query(by_score))


def _slots(store: Any, bucket: int) -> tuple[Any, Any]:
    """SQL for a decision's time bucket (epoch seconds // ``bucket``) and score bin, as the store's
    database computes them (:meth:`._dialect.Dialect.time_and_score_bins`)."""
    return store.db.vendor.time_and_score_bins(_d.c.decided_at, _d.c.probability * SCORE_BINS, bucket)


def decision_counts(conn: Connection, since: datetime) -> dict[str, int]:
    """Decisions by outcome since ``since``, exactly: the whole minutes from their counts, the part of
    a minute before the first whole one from the decisions themselves."""
    first = math.ceil(since.timestamp() / MINUTE)
    edge = datetime.fromtimestamp(first * MINUTE, UTC)
    head = (
        select(_d.c.decision, func.count())
        .where(_d.c.decided_at >= since, _d.c.decided_at < edge)
        .group_by(_d.c.decision)
    )
    whole = (
        select(_m.c.decision, func.sum(_m.c.decisions)).where(_m.c.minute >= first).group_by(_m.c.decision)
    )
    counts: dict[str, int] = {}
    for query in (head, whole):
        for decision, count in conn.execute(query):
            counts[str(decision)] = counts.get(str(decision), 0) + int(count)
    return counts
