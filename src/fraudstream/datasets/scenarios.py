"""Fraud scenarios for the synthetic traffic generator, and the column-array rows they produce.

Rows are a dict of equally long numpy arrays holding codes rather than strings (customer, device,
merchant and IP as integers; country, channel, browser, payment type and scenario as indexes into
code tables), so that a million of them can be built, concatenated and sorted without touching
Python objects; the generator turns them into strings once, at the end.

Each scenario receives the population, the normal traffic and a budget of fraudulent rows, and
returns the rows it adds. ``compromised_merchant`` instead converts normal rows in place, which is
why it gets the normal traffic at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fraudstream.datasets.population import Population

Rows = dict[str, np.ndarray]
Scenario = Callable[[Population, Rows, float, np.random.Generator], Rows]

MINUTE, HOUR, DAY = 60.0, 3_600.0, 86_400.0
SCENARIOS = (
    "compromised_merchant",
    "account_takeover",
    "card_testing",
    "bot_signup",
    "device_farm",
    "amount_outlier",
)
CONVERTING = frozenset({"compromised_merchant"})
CHANNELS = ("online", "pos", "mobile")
ONLINE, POS, MOBILE = range(3)
PAYMENTS = ("card", "wallet", "bnpl")
CARD, WALLET, BNPL = range(3)
BROWSERS = ("chrome", "safari", "firefox", "edge", "samsung_internet", "opera")
HIGH_VALUE = ("electronics", "travel", "fashion")
DIGITAL = ("digital_services", "gaming")

_DEFAULTS: dict[str, Any] = {
    "device": -1,
    "ip": -1,
    "browser": -1,
    "lat": np.nan,
    "lon": np.nan,
    "payment": CARD,
    "fraud": False,
    "scenario": -1,
}
_REQUIRED = ("t", "customer", "amount", "merchant", "channel", "country", "created")
_FLOATS = frozenset({"t", "amount", "created", "lat", "lon"})
FIELDS = (*_REQUIRED, *_DEFAULTS)


def make_rows(n: int, **columns: Any) -> Rows:
    """Build rows from arrays or scalars (broadcast), so scenarios only name what differs from defaults."""
    unknown, missing = set(columns) - set(FIELDS), set(_REQUIRED) - set(columns)
    if unknown or (missing and n):
        raise ValueError(f"unknown row fields {sorted(unknown)}, missing {sorted(missing)}")
    out: Rows = {}
    for name in FIELDS:
        dtype = np.float64 if name in _FLOATS else bool if name == "fraud" else np.int64
        value = columns.get(name, _DEFAULTS.get(name, 0))
        out[name] = np.array(np.broadcast_to(np.asarray(value, dtype=dtype), (n,)))
    return out


def concat_rows(parts: list[Rows]) -> Rows:
    """Concatenate rows field by field."""
    return {name: np.concatenate([part[name] for part in parts]) for name in FIELDS}


def random_ips(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random public-looking IPv4 addresses as 32-bit integers (formatted as strings at the end)."""
    first = rng.integers(11, 224, n, dtype=np.int64)
    rest = rng.integers(0, 1 << 24, n, dtype=np.int64)
    return (first << 24) | (rest | 1)


def episode_sizes(rng: np.random.Generator, budget: float, low: int, high: int) -> np.ndarray:
    """Episode sizes in ``[low, high]`` whose total is as close to ``budget`` as possible (at least one)."""
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(low, high + 1, size=int(budget / low) + 2)
    total = np.cumsum(sizes)
    return sizes[: int(np.argmin(np.abs(total - budget))) + 1]


def _expand(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    episode = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(len(episode)) - (np.cumsum(sizes) - sizes)[episode]
    return episode, position


def _regulars(pop: Population) -> np.ndarray:
    regulars = np.flatnonzero(pop.n_tx >= 3)
    return regulars if len(regulars) else np.arange(pop.n_customers)


def _starts(rng: np.random.Generator, pop: Population, m: int, length: float) -> np.ndarray:
    return rng.uniform(0.0, max(pop.span - length, 0.0), m)


def compromised_merchant(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """Mark every transaction of a few merchants during several days as fraud (a breached merchant)."""
    counts = np.bincount(normal["merchant"], minlength=len(pop.merchant_category))
    candidates = list(rng.permutation(np.flatnonzero(counts)))
    remaining = budget
    while candidates and remaining > 0.1 * budget:
        rates = counts[candidates] / pop.span
        fits = [i for i, r in enumerate(rates) if r * 2 * DAY <= remaining]
        pick = fits[0] if fits else int(np.argmin(rates))
        merchant, rate = candidates.pop(pick), rates[pick]
        length = min(rng.uniform(3, 10) * DAY, max(remaining / rate, 2 * DAY), pop.span)
        start = rng.uniform(0.0, pop.span - length)
        hit = (normal["merchant"] == merchant) & (normal["t"] >= start) & (normal["t"] < start + length)
        hit &= ~normal["fraud"]
        normal["fraud"][hit] = True
        normal["scenario"][hit] = SCENARIOS.index("compromised_merchant")
        remaining -= int(hit.sum())
    return make_rows(0)


def account_takeover(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """A burst of 3-8 high-amount purchases within an hour from a new device and IP in another country."""
    sizes = episode_sizes(rng, budget, 3, 8)
    (ep, _), m = _expand(sizes), len(sizes)
    n = len(ep)
    victim = rng.choice(_regulars(pop), m)
    foreign = (pop.country[victim] + rng.integers(1, len(pop.centroids), m)) % len(pop.centroids)
    usual = pop.usual[victim][ep]
    return make_rows(
        n,
        t=_starts(rng, pop, m, HOUR)[ep] + rng.uniform(0, HOUR, n),
        customer=victim[ep],
        amount=np.maximum(usual * rng.uniform(4, 15, n), rng.uniform(150, 600, n)),
        merchant=pop.pick_merchants(rng, n, HIGH_VALUE),
        channel=ONLINE,
        device=pop.new_devices(m)[ep],
        ip=random_ips(rng, m)[ep],
        browser=rng.integers(0, len(BROWSERS), m)[ep],
        country=foreign[ep],
        created=pop.created[victim][ep],
        fraud=True,
        scenario=SCENARIOS.index("account_takeover"),
    )


def card_testing(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """5-20 tiny probes at an online merchant within minutes, then one large cash-out purchase."""
    sizes = episode_sizes(rng, budget, 6, 21)
    (ep, position), m = _expand(sizes), len(sizes)
    n = len(ep)
    victim = rng.integers(0, pop.n_customers, m)
    start, window = _starts(rng, pop, m, HOUR), rng.uniform(MINUTE, 10 * MINUTE, m)
    cashout = position == sizes[ep] - 1
    probe_t = start[ep] + rng.uniform(0, 1, n) * window[ep]
    cashout_t = start[ep] + window[ep] + rng.uniform(MINUTE, 30 * MINUTE, n)
    merchant = np.where(
        cashout, pop.pick_merchants(rng, n, HIGH_VALUE), pop.pick_merchants(rng, m, DIGITAL)[ep]
    )
    return make_rows(
        n,
        t=np.where(cashout, cashout_t, probe_t),
        customer=victim[ep],
        amount=np.where(cashout, rng.uniform(300, 2500, n), rng.uniform(0.5, 3.0, n)),
        merchant=merchant,
        channel=ONLINE,
        device=pop.new_devices(m)[ep],
        ip=random_ips(rng, m)[ep],
        browser=rng.integers(0, len(BROWSERS), m)[ep],
        country=rng.integers(0, len(pop.centroids), m)[ep],
        created=pop.created[victim][ep],
        fraud=True,
        scenario=SCENARIOS.index("card_testing"),
    )


def bot_signup(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """Waves of brand-new accounts, each buying 1-60 seconds after it was created, from a few IPs."""
    sizes = episode_sizes(rng, budget, 3, 15)
    (ep, _), m = _expand(sizes), len(sizes)
    n = len(ep)
    t = _starts(rng, pop, m, HOUR)[ep] + rng.uniform(0, HOUR, n)
    gift_card = rng.random(n) < 0.5
    amount = np.where(
        gift_card, rng.choice([25.0, 50.0, 100.0, 200.0], n), rng.lognormal(np.log(120), 0.5, n)
    )
    return make_rows(
        n,
        t=t,
        customer=pop.new_customers(n),
        amount=amount,
        merchant=pop.pick_merchants(rng, n, ("electronics", *DIGITAL)),
        channel=ONLINE,
        device=pop.new_devices(n),
        ip=random_ips(rng, 2 * m).reshape(m, 2)[ep, rng.integers(0, 2, n)],
        browser=rng.integers(0, len(BROWSERS), m)[ep],
        country=rng.integers(0, len(pop.centroids), m)[ep],
        created=t - rng.uniform(1.0, 59.999, n),
        fraud=True,
        scenario=SCENARIOS.index("bot_signup"),
    )


def device_farm(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """One phone in a farm logs into 10-50 different customers' accounts within a day."""
    sizes = np.minimum(episode_sizes(rng, budget, 10, 50), pop.n_customers)
    (ep, _), m = _expand(sizes), len(sizes)
    n = len(ep)
    accounts = np.concatenate(
        [np.zeros(0, np.int64), *(rng.choice(pop.n_customers, k, replace=False) for k in sizes)]
    )
    farm = rng.integers(0, len(pop.centroids), m)
    location = pop.centroids[farm] + rng.normal(0, 1.0, (m, 2))
    return make_rows(
        n,
        t=_starts(rng, pop, m, DAY)[ep] + rng.uniform(0, 1, n) * rng.uniform(0.25, 1, m)[ep] * DAY,
        customer=accounts,
        amount=rng.lognormal(np.log(80), 0.6, n),
        merchant=pop.pick_merchants(rng, n, ("electronics", *DIGITAL)),
        channel=MOBILE,
        device=pop.new_devices(m)[ep],
        ip=random_ips(rng, 3 * m).reshape(m, 3)[ep, rng.integers(0, 3, n)],
        browser=rng.integers(0, len(BROWSERS), m)[ep],
        country=farm[ep],
        lat=location[ep, 0] + rng.normal(0, 0.001, n),
        lon=location[ep, 1] + rng.normal(0, 0.001, n),
        created=pop.created[accounts],
        payment=rng.choice([CARD, WALLET], n),
        fraud=True,
        scenario=SCENARIOS.index("device_farm"),
    )


def amount_outlier(pop: Population, normal: Rows, budget: float, rng: np.random.Generator) -> Rows:
    """A customer's own device and IP, but an amount 10-50 times their usual (median) spend."""
    n = max(1, round(budget)) if budget > 0 else 0
    customer = rng.choice(_regulars(pop), n)
    mobile = rng.random(n) < 0.5
    home = pop.home[customer] + rng.normal(0, 0.15, (n, 2))
    return make_rows(
        n,
        t=rng.uniform(0, pop.span, n),
        customer=customer,
        amount=pop.usual[customer] * rng.uniform(10, 50, n),
        merchant=pop.pick_merchants(rng, n, HIGH_VALUE),
        channel=np.where(mobile, MOBILE, ONLINE),
        device=pop.devices[customer, 0],
        ip=pop.ips[customer, 0],
        browser=pop.browser[customer],
        country=pop.country[customer],
        lat=np.where(mobile, home[:, 0], np.nan),
        lon=np.where(mobile, home[:, 1], np.nan),
        created=pop.created[customer],
        fraud=True,
        scenario=SCENARIOS.index("amount_outlier"),
    )


INJECTORS: dict[str, Scenario] = {
    "compromised_merchant": compromised_merchant,
    "account_takeover": account_takeover,
    "card_testing": card_testing,
    "bot_signup": bot_signup,
    "device_farm": device_farm,
    "amount_outlier": amount_outlier,
}
