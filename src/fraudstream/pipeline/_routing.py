"""A/B routing: which customers the challenger decides, by a stable hash of the customer id.

A customer's bucket is the first 8 bytes of the BLAKE2b digest of their id, read as a fraction of
2**64; the challenger decides the customers whose bucket falls below the configured share. The
bucket never depends on the process, the batch or the time, so every server and worker routes a
customer the same way, across restarts; and raising the share only adds customers to the
challenger's arm (none move back), so a ramp from 5 % to 20 % keeps the first 5 % where they were.
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

_SPAN = float(2**64)


def customer_bucket(customer_id: str) -> float:
    """The customer's place in ``[0, 1)``, the same everywhere and always."""
    return int.from_bytes(blake2b(customer_id.encode(), digest_size=8).digest(), "big") / _SPAN


def routed_rows(customer_ids: np.ndarray, share: float) -> np.ndarray:
    """Which rows (a boolean mask) belong to customers in the challenger's ``share``."""
    if share <= 0.0:
        return np.zeros(len(customer_ids), dtype=bool)
    if share >= 1.0:
        return np.ones(len(customer_ids), dtype=bool)
    ids = np.asarray(customer_ids, dtype=object).tolist()
    return np.fromiter((customer_bucket(str(c)) < share for c in ids), dtype=bool, count=len(ids))
