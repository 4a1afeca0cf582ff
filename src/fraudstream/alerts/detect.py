"""Which decisions page someone: BLOCKs, HOLDs, bursts of FLAGs for one customer, alerting rules' hits.

Detection takes a whole batch of stored decisions at once. Each decision yields at most one alert of
its own (a BLOCK or a HOLD outranks an alerting rule's hit, whose rules it names anyway); a FLAG may in
addition complete a burst. A HOLD pages because a payment waits on an analyst's verdict, and gets the
default outcome if none comes in time; a CHALLENGE does not, since the customer answers it. Alerts are
then de-duplicated per ``(kind, entity)`` within ``alert_dedup_seconds`` of wall-clock time, because
the window is about not paging people twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.events.decision import DecisionRecord
from fraudstream.events.reasons import reason_text
from fraudstream.rules.ruleset import RuleSet

BLOCK = "block"
HOLD = "hold"
FLAG_BURST = "flag_burst"
RULE = "rule"
#: List hits that always alert, whatever the rules file says.
DENY_PREFIX = "deny_list:"
MAX_REASONS = 5
#: Past this many remembered FLAGs, forget every customer whose newest FLAG left the window.
_PRUNE_AT = 100_000

History = Callable[[Sequence[str], datetime, datetime], list[tuple[str, str, datetime]]]
Recent = Callable[[set[tuple[str, str]], datetime], set[tuple[str, str]]]


def alerting_rules(rules: RuleSet) -> frozenset[str]:
    """Names of the rules marked ``alert: true`` in ``rules``."""
    return frozenset(rule.name for rule in rules.rules if rule.alert)


def describe(record: DecisionRecord) -> str:
    """``"BLOCK of transaction t1 (customer c1): amount 12.50, fraud probability 0.91; reasons: ..."``,
    each reason in words (:func:`~fraudstream.events.reasons.reason_text`)."""
    reasons = "; ".join(reason_text(r) for r in record.reasons[:MAX_REASONS]) or "none given"
    return (
        f"{record.decision} of transaction {record.transaction_id} (customer {record.customer_id}): "
        f"amount {record.amount:,.2f}, fraud probability {record.probability:.2f}; reasons: {reasons}"
    )


def _details(record: DecisionRecord) -> dict[str, Any]:
    return {
        "decision": record.decision,
        "probability": round(float(record.probability), 4),
        "amount": float(record.amount),
        "customer_id": record.customer_id,
        "timestamp": record.timestamp.isoformat(),
        "rules": list(record.rules),
        "reasons": list(record.reasons[:MAX_REASONS]),
    }


class AlertDetector:
    """Turns batches of decisions into alerts; keeps FLAG times and recent alerts in memory.

    ``history`` (e.g. :meth:`~fraudstream.storage.alerting.AlertRepository.flag_history`) adds the
    FLAGs other processes stored, and ``recent`` (e.g.
    :meth:`~fraudstream.storage.alerting.AlertRepository.recent_keys`) the alerts they raised, so bursts and
    de-duplication hold across the API, the workers and restarts. Bursts are counted by event time:
    ``flag_burst`` or more FLAGs for one customer within ``flag_burst_seconds``. Not thread-safe: the
    dispatcher calls it from one thread.
    """

    def __init__(
        self,
        *,
        flag_burst: int = 3,
        flag_burst_seconds: float = 600.0,
        dedup_seconds: float = 600.0,
        alert_rules: Callable[[], Iterable[str]] = frozenset,
        history: History | None = None,
        recent: Recent | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.flag_burst = flag_burst
        self.window = timedelta(seconds=flag_burst_seconds)
        self.dedup = timedelta(seconds=dedup_seconds)
        self.alert_rules, self.history, self.recent, self.clock = alert_rules, history, recent, clock
        self._flags: dict[str, dict[str, datetime]] = {}
        self._remembered = 0
        self._last_alert: dict[tuple[str, str], datetime] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        alert_rules: Callable[[], Iterable[str]] = frozenset,
        history: History | None = None,
        recent: Recent | None = None,
    ) -> AlertDetector:
        return cls(
            flag_burst=settings.flag_burst,
            flag_burst_seconds=settings.flag_burst_seconds,
            dedup_seconds=settings.alert_dedup_seconds,
            alert_rules=alert_rules,
            history=history,
            recent=recent,
        )

    def detect(self, records: list[DecisionRecord]) -> list[Alert]:
        """The alerts ``records`` raise, oldest event first, after de-duplication."""
        now = self.clock()
        paging = frozenset(self.alert_rules())
        candidates: list[tuple[datetime, Alert]] = []
        for record in records:
            if record.decision in ("BLOCK", "HOLD"):
                kind = BLOCK if record.decision == "BLOCK" else HOLD
                candidates.append((record.timestamp, self._single(kind, record, now)))
                continue
            hits = [r for r in record.rules if r in paging or r.startswith(DENY_PREFIX)]
            if hits:
                alert = self._single(RULE, record, now)
                alert.message = f"Alerting rule {', '.join(hits)}: {alert.message}"
                alert.details["alert_rules"] = hits
                candidates.append((record.timestamp, alert))
        flags = [r for r in records if r.decision == "FLAG"]
        if flags:
            candidates += self._bursts(flags, now)
        candidates.sort(key=lambda c: c[0])
        return self._deduplicate([alert for _, alert in candidates], now)

    def _single(self, kind: str, record: DecisionRecord, now: datetime) -> Alert:
        return Alert(
            kind=kind,
            entity=f"customer:{record.customer_id}",
            transaction_id=record.transaction_id,
            message=describe(record),
            details=_details(record),
            created_at=now,
        )

    def _bursts(self, flags: list[DecisionRecord], now: datetime) -> list[tuple[datetime, Alert]]:
        flags = sorted(flags, key=lambda r: r.timestamp)
        seen = [(r.customer_id, r.transaction_id, r.timestamp) for r in flags]
        if self.history is not None:
            since, until = flags[0].timestamp - self.window, flags[-1].timestamp
            seen += self.history(sorted({r.customer_id for r in flags}), since, until)
        for customer, transaction_id, ts in seen:
            known = self._flags.setdefault(customer, {})
            if transaction_id not in known:
                known[transaction_id] = ts
                self._remembered += 1
        out: list[tuple[datetime, Alert]] = []
        alerted: set[str] = set()
        for record in flags:
            customer = record.customer_id
            if customer in alerted:
                continue
            start = record.timestamp - self.window
            burst = sorted(
                (ts, t) for t, ts in self._flags[customer].items() if start < ts <= record.timestamp
            )
            if len(burst) < self.flag_burst:
                continue
            alerted.add(customer)
            minutes = self.window.total_seconds() / 60
            alert = self._single(FLAG_BURST, record, now)
            alert.message = (
                f"{len(burst)} FLAGs for customer {customer} within {minutes:g} min of event time "
                f"({', '.join(t for _, t in burst[-10:])}); latest: {alert.message}"
            )
            alert.details |= {"count": len(burst), "transactions": [t for _, t in burst]}
            out.append((record.timestamp, alert))
        self._forget(flags[-1].timestamp)
        return out

    def _forget(self, newest: datetime) -> None:
        if self._remembered < _PRUNE_AT:
            return
        horizon = newest - self.window
        self._flags = {
            c: kept
            for c, times in self._flags.items()
            if (kept := {t: ts for t, ts in times.items() if ts > horizon})
        }
        self._remembered = sum(len(times) for times in self._flags.values())

    def _deduplicate(self, alerts: list[Alert], now: datetime) -> list[Alert]:
        since = now - self.dedup
        last = self._last_alert
        # Entries go in at the end with the clock's time, so the expired ones are at the front: drop
        # just those, rather than rebuild a dictionary that holds every alert of the window.
        while last:
            oldest = next(iter(last))
            if last[oldest] > since:
                break
            del last[oldest]
        keys = {(a.kind, a.entity) for a in alerts}
        seen = {key for key in keys if last.get(key, since) > since}
        if self.recent is not None and keys - seen:
            seen |= self.recent(keys - seen, since)
        out = []
        for alert in alerts:
            key = (alert.kind, alert.entity)
            if key in seen:
                continue
            seen.add(key)
            last.pop(key, None)
            last[key] = now
            out.append(alert)
        return out
