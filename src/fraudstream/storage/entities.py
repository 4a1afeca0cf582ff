"""``EntityRepository``: a customer, device, IP address or merchant (or any field a feature spec keys
on) as analysts look at it: its transactions with their decisions and labels, its cases, and the
entities linked to it through shared devices and IP addresses.

The four named fields are columns of ``transactions`` with an index each (migration 0012); any other
field is read from the stored body (``extra.card`` is ``payload["extra"]["card"]``), which scans the
period instead of an index. Links are read over a period (the feature set's retention, as the
features themselves see them): the devices, IP addresses, merchants and customers of the entity's
own transactions, and the other customers who used one of its devices or IP addresses.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, or_, select

from fraudstream.storage import tables
from fraudstream.storage.database import Database

_t, _d, _l, _ct, _c = (
    tables.transactions,
    tables.decisions,
    tables.labels,
    tables.case_transactions,
    tables.cases,
)

#: The fields stored as columns (and indexed), in the order a search reports them.
COLUMNS = ("customer_id", "device_id", "ip_address", "merchant_id")
#: The fields through which customers are linked to each other.
SHARED = ("device_id", "ip_address")


@dataclass
class Entity:
    kind: str
    """the field: customer_id, device_id, ip_address, merchant_id, or another transaction field"""
    value: str
    transactions: builtins.list[dict[str, Any]] = field(default_factory=list)
    cases: builtins.list[dict[str, Any]] = field(default_factory=list)
    linked: builtins.list[dict[str, Any]] = field(default_factory=list)
    """The other fields' values among its transactions: ``field``, ``value``, ``transactions``."""
    shared: builtins.list[dict[str, Any]] = field(default_factory=list)
    """Other customers who used one of its devices or IP addresses: ``customer_id``, ``via``,
    ``transactions``, ``known_fraud``."""
    since: datetime | None = None
    """Where its links were read from."""


def column(name: str) -> ColumnElement[Any]:
    """The transactions' value of field ``name``: a column, or the stored body's field as text."""
    if name in COLUMNS:
        return _t.c[name]
    path = name.split(".")
    if not all(part.isidentifier() for part in path):
        raise ValueError(f"field: expected a transaction field such as device_id or extra.card, got {name!r}")
    return _t.c.payload[tuple(path)].as_string() if len(path) > 1 else _t.c.payload[name].as_string()


class EntityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def search(
        self, text: str, fields: builtins.list[str] | None = None, limit: int = 20
    ) -> builtins.list[dict[str, Any]]:
        """The entities whose value is ``text`` or starts with it, per field: ``field``, ``value``,
        ``transactions``, ``last_seen``; exact matches first, then by activity."""
        found: builtins.list[dict[str, Any]] = []
        with self._db.read() as conn:
            for name in fields or COLUMNS:
                value = column(name)
                query = (
                    select(
                        value.label("value"), func.count().label("n"), func.max(_t.c.timestamp).label("last")
                    )
                    .where(value.like(_prefix(text), escape="\\"))
                    .group_by(value)
                    .order_by(func.count().desc())
                    .limit(limit)
                )
                for row in conn.execute(query):
                    found.append(
                        {"field": name, "value": row.value, "transactions": row.n, "last_seen": row.last}
                    )
        found.sort(key=lambda e: (e["value"] != text, -e["transactions"]))
        return found[:limit]

    def get(self, name: str, value: str, since: datetime | timedelta, limit: int = 100) -> Entity | None:
        """The entity ``name`` = ``value`` (its history: the newest ``limit`` transactions with their
        decisions and labels), its links over the transactions since ``since``, or ``None`` when it has
        none at all. A ``timedelta`` reaches back from the entity's latest transaction, the data's time:
        a replayed or delayed stream links what a live one does, whatever the clock says."""
        entity = Entity(name, value)
        mine = column(name) == value
        fraud = (
            select(_l.c.transaction_id, func.max(cast(_l.c.is_fraud, Integer)).label("fraud"))
            .group_by(_l.c.transaction_id)
            .subquery()
        )
        history = (
            select(
                _t.c.transaction_id, _t.c.timestamp, _t.c.customer_id, _t.c.device_id, _t.c.ip_address,
                _t.c.merchant_id, _t.c.amount, _d.c.decision, _d.c.probability, _d.c.model_version,
                fraud.c.fraud, _ct.c.case_id,
            )
            .select_from(
                _t.outerjoin(_d, _d.c.transaction_id == _t.c.transaction_id)
                .outerjoin(fraud, fraud.c.transaction_id == _t.c.transaction_id)
                .outerjoin(_ct, _ct.c.transaction_id == _t.c.transaction_id)
            )
            .where(mine)
            .order_by(_t.c.timestamp.desc(), _t.c.transaction_id.desc())
            .limit(limit)
        )  # fmt: skip
        with self._db.read() as conn:
            rows = [dict(r) for r in conn.execute(history).mappings()]
            if not rows:
                return None
            for row in rows:
                verdict = row.pop("fraud")
                row["known_fraud"] = None if verdict is None else bool(verdict)
            entity.transactions = rows
            newest: datetime = rows[0]["timestamp"]  # the newest first, aware UTC (tables.UTCDateTime)
            start = newest - since if isinstance(since, timedelta) else since
            entity.since = start
            case_ids = sorted({r["case_id"] for r in rows if r["case_id"] is not None})
            by_group = (_c.c.group_key == name) & (_c.c.group_value == value)
            cases = select(_c).where(by_group | _c.c.id.in_(case_ids)).order_by(_c.c.opened_at.desc())
            entity.cases = [dict(r) for r in conn.execute(cases).mappings()]
            entity.linked = self._linked(conn, name, mine, start)
            entity.shared = self._shared(conn, name, value, mine, start)
        return entity

    def _linked(
        self, conn: Any, name: str, mine: ColumnElement[bool], since: datetime
    ) -> builtins.list[dict[str, Any]]:
        out: builtins.list[dict[str, Any]] = []
        for other in COLUMNS:
            if other == name:
                continue
            query = (
                select(_t.c[other].label("value"), func.count().label("n"))
                .where(mine, _t.c.timestamp >= since, _t.c[other].is_not(None))
                .group_by(_t.c[other])
                .order_by(func.count().desc())
                .limit(50)
            )
            out += [{"field": other, "value": r.value, "transactions": r.n} for r in conn.execute(query)]
        return out

    def _shared(
        self, conn: Any, name: str, value: str, mine: ColumnElement[bool], since: datetime
    ) -> builtins.list[dict[str, Any]]:
        """Customers other than the entity's own who used one of the devices or IP addresses of its
        transactions: for a customer, who shares its devices and IPs; for a device, who shares the IP
        addresses its customers used on it."""
        own = set(
            conn.execute(select(_t.c.customer_id).where(mine, _t.c.timestamp >= since).distinct()).scalars()
        )
        via: dict[str, set[str]] = defaultdict(set)
        used = {
            link: _t.c[link].in_(
                select(_t.c[link])
                .where(mine, _t.c.timestamp >= since, _t.c[link].is_not(None))
                .distinct()
                .scalar_subquery()
            )
            for link in SHARED
        }
        for link, shared in used.items():
            query = (
                select(_t.c.customer_id, _t.c[link].label("via"))
                .where(shared, _t.c.timestamp >= since)
                .group_by(_t.c.customer_id, _t.c[link])
            )
            for row in conn.execute(query):
                if row.customer_id in own:  # the entity's own customers are among ``linked``
                    continue
                via[row.customer_id].add(f"{link}:{row.via}")
        if not via:
            return []
        # Each transaction once, though it may share a device and an IP address both.
        counted = (
            select(_t.c.customer_id, func.count().label("n"))
            .where(or_(*used.values()), _t.c.timestamp >= since, _t.c.customer_id.in_(list(via)))
            .group_by(_t.c.customer_id)
        )
        counts = {row.customer_id: row.n for row in conn.execute(counted)}
        flagged = (
            select(_t.c.customer_id)
            .join(_l, _l.c.transaction_id == _t.c.transaction_id)
            .where(_t.c.customer_id.in_(list(via)), _l.c.is_fraud.is_(True))
            .distinct()
        )
        fraud = set(conn.execute(flagged).scalars())
        ranked = sorted(via, key=lambda c: (-len(via[c]), -counts[c], c))[:100]
        return [
            {"customer_id": c, "via": sorted(via[c]), "transactions": counts[c], "known_fraud": c in fraud}
            for c in ranked
        ]


def _prefix(text: str) -> str:
    """A LIKE pattern for values starting with ``text``, its wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


__all__ = ["COLUMNS", "Entity", "EntityRepository", "column"]
