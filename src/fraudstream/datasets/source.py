"""Where a command's transactions come from: a canonical file, a user's file with a mapping, or a
named public dataset (its sample in the datasets folder, or the full files the user names)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd

from fraudstream.config import Settings
from fraudstream.datasets.io import read_frame
from fraudstream.datasets.registry import load_dataset


def default_data_path(settings: Settings) -> Path:
    return settings.data_dir / "transactions.parquet"


def load_source(
    settings: Settings,
    data: Path | None = None,
    dataset: str | None = None,
    label_delay_days: float = 7.0,
    *,
    paths: Sequence[Path] | None = None,
    mapping: Path | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Read the transactions a command was pointed at, as a canonical frame.

    - ``dataset``: the public dataset's sample from the datasets folder, or with ``paths`` the files
      given (the full public files, for example; see :func:`~fraudstream.datasets.registry.load_dataset`);
    - ``data`` with ``mapping``: a user's CSV or Parquet file read through a YAML mapping
      (:mod:`fraudstream.datasets.generic`);
    - ``data`` alone: a file of canonical transactions (Parquet, CSV or JSON lines), or an archive
      (``s3://bucket/prefix`` or its local folder, see :func:`~fraudstream.archive.reader.read_archive`),
      labelled by its archived labels;
    - nothing: the generated file in the data folder.

    ``label_delay_days`` is when dataset labels become known (a mapping may set its own). A row of a
    file that cannot be read refuses the file naming its line, or with ``skip_bad_rows`` is skipped
    and counted (see :class:`~fraudstream.datasets.io.BadRows`).
    """
    delay = timedelta(days=label_delay_days)
    if data is not None and dataset is not None:
        raise ValueError("give either --data or --dataset, not both")
    if paths and dataset is None:
        raise ValueError(
            "--path names the files of a public dataset: add --dataset NAME "
            "(for your own file, use --data FILE --mapping MAPPING.yaml)"
        )
    if mapping is not None and data is None:
        raise ValueError("--mapping describes the columns of a --data FILE: give that file too")
    if dataset is not None:
        return load_dataset(
            dataset,
            settings.datasets_dir,
            label_delay=delay,
            paths=paths or None,
            skip_bad_rows=skip_bad_rows,
        )
    if mapping is not None and data is not None:
        from fraudstream.datasets.generic import load_generic

        return load_generic(data, mapping, label_delay=delay, skip_bad_rows=skip_bad_rows)
    if data is not None:
        from fraudstream.archive.location import archive_url

        url = archive_url(data)
        if url is not None:
            from fraudstream.archive.reader import read_archive

            return read_archive(url, label_delay=delay)
    path = data or default_data_path(settings)
    if not path.exists():
        raise FileNotFoundError(
            f"no transactions at {path}: create them with `fraudstream generate --out {path}`, "
            "or pass --data FILE or --dataset NAME"
        )
    if path.is_dir():
        raise ValueError(
            f"--data {str(data)!r} is a folder with no archive in it (no decisions/, transactions/ or "
            "labels/ folder): give a transactions file (.parquet, .csv, .jsonl) or an archive "
            "(s3://bucket/prefix or the folder `fraudstream archive run` writes)"
        )
    return read_frame(path, skip_bad_rows=skip_bad_rows)
