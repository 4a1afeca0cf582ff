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
                    is_fraud=False, payment_type="TRANSFER",
                    extra={"balance": 12.5, "bin": 411111, "opened": "2020-05-01T00:00:00+00:00"}),
    ]  # fmt: skip
    for chosen in (transactions, transactions[1:2], transactions[:1], []):
        got = TransactionBatch.from_transactions(chosen)
        want = TransactionBatch.from_frame(records_to_frame(chosen))
        columns = [(f.name, getattr(got, f.name), getattr(want, f.name)) for f in fields(TransactionBatch)]
        asked = [(f"{name}:{kind}", got.column(name, kind), want.column(name, kind)) for name, kind in FIELDS]
        for name, a, b in [*columns, *asked]:
            if name == "source":
                continue
            assert a.dtype == b.dtype, name
            if a.dtype == object:
                assert a.tolist() == b.tolist(), name
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)


FIELDS = (
    ("payment_type", "text"),
    ("extra.balance", "number"),
    ("extra.bin", "text"),
    ("extra.opened", "time"),
    ("extra.absent", "number"),
    ("channel", "text"),
)


def test_fields_a_batch_does_not_carry_are_missing_and_wrong_kinds_too() -> None:
    one = Transaction(transaction_id="a", timestamp=T0, customer_id="c1", amount=1.0, extra={"x": "text"})
    batch = TransactionBatch.from_transactions([one, one])
    assert np.isnan(batch.column("extra.x", "number")).all()
    assert batch.column("extra.x", "text").tolist() == ["text", "text"]
    assert batch.column("extra.nothing", "text").tolist() == [None, None]
    picked = batch.take(np.array([1]))
    assert picked.column("extra.x", "text").tolist() == ["text"]
    both = TransactionBatch.concat([picked, batch])
    assert both.column("extra.x", "text").tolist() == ["text"] * 3
