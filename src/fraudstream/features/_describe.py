"""Short human descriptions of features, generated from the spec entries that declare them.

A reason such as ``ip_secs_since_first = 31047`` means little to a reviewer; ``IP address: seconds
since first seen`` does. The plan (:mod:`fraudstream.features.plan`) asks here for one description per
column as it names the column, from the same parts (field, statistic, window), so a spec of a hundred
features needs no hundred hand-written strings. An entry's ``description`` replaces the generated text
(a template with the placeholders of its ``name``); a ``key`` entry's ``description`` names the entity
its features describe.
"""

from __future__ import annotations

from typing import Any

from fraudstream.features import spec as S

_NOUNS = {
    "amount": "amount",
    "latitude": "latitude",
    "longitude": "longitude",
    "timestamp": "transaction time",
    "account_created_at": "account creation",
    "customer_id": "customer",
    "merchant_id": "merchant",
    "device_id": "device",
    "ip_address": "IP address",
    "merchant_category": "merchant category",
    "payment_type": "payment type",
}
_PLURALS = {
    "customer_id": "customers",
    "merchant_id": "merchants",
    "device_id": "devices",
    "ip_address": "IP addresses",
    "country": "countries",
    "merchant_category": "merchant categories",
    "payment_type": "payment types",
    "channel": "channels",
    "browser": "browsers",
    "currency": "currencies",
}
_STATS = {
    "count": "number of transactions",
    "sum": "total {of}",
    "mean": "average {of}",
    "min": "smallest {of}",
    "max": "largest {of}",
    "std": "standard deviation of {of}",
    "median": "median {of}",
}
_AGAINST = {"mean": "average", "median": "median", "max": "largest"}
_CALENDAR = {
    "hour": "hour of day (UTC)",
    "weekday": "day of the week (Monday 0)",
    "is_night": "at night (before 6 am UTC)",
    "is_weekend": "on a weekend",
}
_LABELS = {
    "known_fraud": "known frauds {window}",
    "fraud_rate": "share of transactions known to be fraud {window}",
    "known_fraud_share": "share of transactions old enough to be labelled that are known fraud {window}",
    "secs_since_known_fraud": "seconds since the latest known fraud",
    "secs_since_first_known_fraud": "seconds since the first known fraud",
    "known_fraud_span": "seconds between the first and the latest known fraud",
}


class DescriptionError(ValueError):
    """A ``description`` template names a placeholder its entry does not have."""


def noun(field: str) -> str:
    """How a description names a field: ``ip_address`` → ``IP address``, ``extra.old_balance`` →
    ``old balance``."""
    if field in _NOUNS:
        return _NOUNS[field]
    return S.short_name(field).replace("_", " ")


def plural(field: str) -> str:
    """A field's values counted: ``device_id`` → ``devices``, ``extra.shop`` → ``shop values``."""
    return _PLURALS.get(field) or f"{noun(field)} values"


def value_noun(text: str | None, kinds: dict[str, str]) -> str:
    """A field's noun, or an expression as written (``extra.a - amount``)."""
    if text is None:
        return "amount"
    return noun(text) if text in kinds else text


def _unit(seconds: float) -> tuple[str, float]:
    """The largest unit a whole number of which makes ``seconds``, and its size."""
    units = (("day", S.DAY), ("hour", S.HOUR), ("minute", 60.0))
    return next(((u, n) for u, n in units if seconds >= n and seconds % n == 0), ("second", 1.0))


def window(seconds: float) -> str:
    """``in the last hour``, ``in the last 24 hours``, ``in the last 7 days``."""
    unit, size = _unit(seconds)
    count = seconds / size
    return f"in the last {unit}" if count == 1 else f"in the last {count:g} {unit}s"


def span(seconds: float) -> str:
    """``30-day``, ``1-hour``, ``90-minute``: a window as an adjective."""
    unit, size = _unit(seconds)
    return f"{seconds / size:g}-{unit}"


def entity(key: S.KeyFeatures) -> str:
    """What a key's features are about: ``customer``, ``customer and merchant``, ``merchant (only
    transactions where amount <= 220)``."""
    name = key.description or " and ".join(noun(f) for f in key.key)
    return name if key.where is None else f"{name} (only transactions where {key.where})"


def network(entry: S.NetworkFeatures) -> str:
    """What a network's features are about: ``customer's network through shared devices or IP
    addresses``, or the entry's ``description``."""
    if entry.description is not None:
        return entry.description
    links = " or ".join(plural(f) for f in entry.via)
    reach = "" if entry.hops == 2 else " of this transaction"
    return f"{noun(entry.network)}'s network through shared {links}{reach}"


def network_count(field: str, entry: S.NetworkFeatures) -> str:
    """``number of other customers in the last 30 days``, ``number of devices in the last 30 days``."""
    counted = f"other {plural(field)}" if field == entry.network else plural(field)
    return f"number of {counted} {window(entry.window)}"


def network_labels(which: str, entry: S.NetworkFeatures) -> str:
    """A network's known frauds: those of its other nodes, labelled before the transaction."""
    others = f"other {plural(entry.network)}"
    if which == "known_fraud_members":
        return f"{others} with a known fraud {window(entry.window)}"
    if which == "known_fraud_share":
        return (
            f"share of the {others} old enough to be labelled that have a known fraud {window(entry.window)}"
        )
    return f"seconds since the latest known fraud of the {others} {window(entry.window)}"


def network_age(entry: S.NetworkFeatures) -> str:
    return f"seconds since its earliest transaction {window(entry.window)}"


def where(condition: str | None) -> str:
    return "" if condition is None else f" where {condition}"


def stat(stat_name: str, of: str) -> str:
    """``count`` → ``number of transactions``, ``mean`` → ``average amount``, ``p75`` → ``75th
    percentile of amount``."""
    if stat_name in _STATS:
        return _STATS[stat_name].format(of=of)
    return f"{ordinal(int(stat_name[1:]))} percentile of {of}"


def against(to: str) -> str:
    """A ratio's denominator: ``mean`` → ``average``, ``p75`` → ``75th percentile``."""
    return _AGAINST.get(to) or f"{ordinal(int(to[1:]))} percentile"


def calendar(which: str) -> str:
    return _CALENDAR[which]


def labels(which: str, seconds: float) -> str:
    return _LABELS[which].format(window=window(seconds))


def render(template: str | None, default: str, **parts: Any) -> str:
    """``template`` (an entry's ``description``) with its placeholders filled, else ``default``."""
    if template is None:
        return default
    try:
        return template.format(**parts)
    except (KeyError, IndexError, ValueError) as exc:
        listed = ", ".join("{" + p + "}" for p in parts)
        raise DescriptionError(f"description {template!r}: {exc} is not among {listed}") from None


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``11th``, ``75th``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
