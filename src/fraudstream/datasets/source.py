"""Where a command's transactions come from: a file of canonical transactions or a named dataset."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

from fraudstream.config import Settings
from fraudstream.datasets.io import read_frame
from fraudstream.datasets.registry import load_dataset


def default_data_path(settings: Settings) -> Path:
    return settings.data_dir / "transactions.parquet"


def load_source(
    settings: Settings, data: Path | None = None, dataset: str | None = None, label_delay_days: float = 7.0
) -> pd.DataFrame:
    """Read ``data`` (Parquet, CSV or JSON lines) or the public ``dataset``; by default the generated file."""
    if data is not None and dataset is not None:
        raise ValueError("give either --data or --dataset, not both")
    if dataset is not None:
        return load_dataset(dataset, settings.datasets_dir, label_delay=timedelta(days=label_delay_days))
    path = data or default_data_path(settings)
    if not path.exists():
        raise FileNotFoundError(
            f"no transactions at {path}: create them with `fraudstream generate --out {path}`, "
            "or pass --data FILE or --dataset NAME"
        )
    return read_frame(path)
