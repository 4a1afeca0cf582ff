"""The simulated world: countries and merchant categories, and the population of customers and
merchants drawn from them, which the generator fills and the fraud scenarios read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# code: (share of customers, centroid latitude, longitude, UTC offset in hours); zero share: fraud only.
COUNTRIES = {
    "US": (0.40, 38.0, -95.0, -6), "GB": (0.10, 52.5, -1.5, 0), "DE": (0.09, 51.2, 10.4, 1),
    "FR": (0.08, 46.6, 2.2, 1), "CA": (0.06, 45.5, -75.6, -5), "ES": (0.05, 40.4, -3.7, 1),
    "IT": (0.05, 42.5, 12.5, 1), "NL": (0.04, 52.2, 5.3, 1), "BR": (0.05, -15.8, -47.9, -3),
    "MX": (0.04, 20.0, -100.0, -6), "AU": (0.04, -33.8, 151.0, 10), "NG": (0.0, 9.1, 8.7, 1),
    "RO": (0.0, 45.9, 24.9, 2), "VN": (0.0, 16.0, 107.8, 7), "ID": (0.0, -6.2, 106.8, 7),
    "PH": (0.0, 14.6, 121.0, 8), "UA": (0.0, 49.0, 31.4, 2),
}  # fmt: skip
# category: (share of merchants, median amount, lognormal sigma, has point-of-sale)
CATEGORIES = {
    "grocery": (0.22, 45.0, 0.6, True), "restaurants": (0.18, 30.0, 0.5, True),
    "fuel": (0.08, 50.0, 0.4, True), "fashion": (0.12, 70.0, 0.7, True),
    "electronics": (0.08, 180.0, 0.9, True), "travel": (0.06, 350.0, 0.8, True),
    "pharmacy": (0.07, 25.0, 0.6, True), "entertainment": (0.06, 40.0, 0.6, True),
    "gaming": (0.06, 20.0, 0.8, False), "digital_services": (0.07, 12.0, 0.5, False),
}  # fmt: skip
_CATEGORY = np.array(list(CATEGORIES))


@dataclass
class Population:
    """Customers and merchants as arrays (customer i has id C{i+1}), shared by the fraud scenarios."""

    span: float
    centroids: np.ndarray
    country: np.ndarray
    home: np.ndarray
    devices: np.ndarray
    ips: np.ndarray
    browser: np.ndarray
    created: np.ndarray
    level: np.ndarray
    merchant_category: np.ndarray
    merchant_country: np.ndarray
    merchant_weight: np.ndarray
    next_device: int
    next_customer: int
    usual: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_tx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_customers(self) -> int:
        return len(self.country)

    def new_customers(self, k: int) -> np.ndarray:
        self.next_customer += k
        return np.arange(self.next_customer - k, self.next_customer)

    def new_devices(self, k: int) -> np.ndarray:
        self.next_device += k
        return np.arange(self.next_device - k, self.next_device)

    def pick_merchants(self, rng: np.random.Generator, k: int, categories: tuple[str, ...]) -> np.ndarray:
        """Popularity-weighted merchants of the given categories (any merchant if none exists)."""
        pool = np.flatnonzero(np.isin(_CATEGORY[self.merchant_category], categories))
        pool = pool if len(pool) else np.arange(len(self.merchant_category))
        weights = self.merchant_weight[pool]
        return rng.choice(pool, k, p=weights / weights.sum())
