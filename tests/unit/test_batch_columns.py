"""A batch built from validated transactions holds the columns the canonical table's batch holds."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import records_to_frame
from fraudstream.events.transaction import Transaction

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_columns_from_transactions_equal_those_from_their_table() -> None:
    transactions = [
        Transaction(transaction_id="a", timestamp=T0, customer_id="c1", amount=10.0),
        Transaction(transaction_id="b", timestamp=T0 + timedelta(seconds=1.5), customer_id="c2", amount=0.0,
                    merchant_id="m", device_id="d", ip_address="::1", country="FR", latitude=48.85,
                    longitude=2.35, account_created_at=T0 - timedelta(days=400), is_fraud=True,
                    label_time=T0 + timedelta(days=3)),
        Transaction(transaction_id="c", timestamp=T0 + timedelta(hours=2), customer_id="c1", amount=7.25,
                    is_fraud=False),
    ]  # fmt: skip
    for chosen in (transactions, transactions[1:2], transactions[:1], []):
        got = TransactionBatch.from_transactions(chosen)
        want = TransactionBatch.from_frame(records_to_frame(chosen))
        for field in fields(TransactionBatch):
            a, b = getattr(got, field.name), getattr(want, field.name)
            assert a.dtype == b.dtype, field.name
            if a.dtype == object:
                assert a.tolist() == b.tolist(), field.name
            else:
                np.testing.assert_array_equal(a, b, err_msg=field.name)
