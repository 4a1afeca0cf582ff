"""A database as production leaves it, for the retrain tests: the traffic accepted and decided by the
worker, and every fraud label known by the end of the traffic posted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.events import Label, Transaction
from fraudstream.events.frame import iter_records
from fraudstream.storage import open_store

#: Thirty days of history: evaluation on days 22-27, a 3-day gap, training on days 0-19.
FAST = ["--since", "30d", "--label-delay-days", "3", "--eval-days", "5", "--trials", "0"]
FAST += ["--models", "xgboost,logistic", "--folds", "2", "--min-fraud", "5"]


def production_history(folder: Path, frame: pd.DataFrame, bundle_path: Path) -> str:
    """The URL of a new SQLite database in ``folder`` holding ``frame`` decided by ``bundle_path``'s
    model through ``fraudstream worker``, with the fraud labels known by the traffic's end."""
    url = f"sqlite:///{folder / 'history.db'}"
    with open_store(url) as store:
        store.migrate()
        store.queue.accept([Transaction.model_validate(r) for r in iter_records(frame)])
    env = {"FRAUD_DATA_DIR": str(folder), "FRAUD_DATABASE_URL": url, "FRAUD_MODEL_PATH": str(bundle_path)}
    decided = CliRunner().invoke(app, ["worker", "--burst", "--batch-size", "2000"], env=env)
    assert decided.exit_code == 0, decided.stderr
    end = frame["timestamp"].max()
    fraud = frame[(frame["is_fraud"] == True) & (frame["label_time"] <= end)]  # noqa: E712
    with open_store(url) as store:
        labels = [
            Label(transaction_id=t, is_fraud=True, label_time=w.to_pydatetime())
            for t, w in zip(fraud["transaction_id"], fraud["label_time"], strict=True)
        ]
        assert store.labels.add(labels) == len(labels) > 50
    return url
