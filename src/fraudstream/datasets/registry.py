"""The public datasets by name: where each lives under the datasets folder and how it is loaded.

The CLI, benchmarks and tests refer to datasets by name and a folder, so that the folder can move
(``--datasets-dir`` / ``FRAUD_DATASETS_DIR``) without code knowing file names. The folder holds samples;
a user with the full public files names them instead (``paths``, or ``--dataset NAME --path FILE``),
and the same loader reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from fraudstream.datasets import fraud_ecom, paysim, sparkov
from fraudstream.datasets.fraud_ecom import FRAUD_DATA_FILE, IP_COUNTRY_FILE, load_fraud_ecom
from fraudstream.datasets.handbook import HANDBOOK_FILE, load_handbook
from fraudstream.datasets.paysim import PAYSIM_FILE, load_paysim
from fraudstream.datasets.sparkov import SPARKOV_FILE, load_sparkov


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's file is not in the datasets folder (usually: the folder is not set)."""


class UnknownDatasetError(ValueError):
    """No dataset has this name."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files relative to the datasets folder, in the order its loader takes them.

    ``min_paths``/``max_paths`` bound how many files a user may give instead (``max_paths`` ``None``:
    any number), and ``full_files`` says which ones, for messages.
    """

    name: str
    paths: tuple[str, ...]
    loader: Callable[..., pd.DataFrame]
    description: str
    full_files: str = ""
    min_paths: int = 1
    max_paths: int | None = 1


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "handbook",
            (HANDBOOK_FILE,),
            load_handbook,
            "Fraud Detection Handbook simulated card payments, Apr-Jun 2018 (872,795 rows, 0.78% fraud)",
            "the Handbook's transactions as one Parquet file with its TX_* columns",
        ),
        DatasetSpec(
            "fraud_ecom",
            (FRAUD_DATA_FILE, IP_COUNTRY_FILE),
            load_fraud_ecom,
            "e-commerce purchases, one per user, with device, browser and IP (30,189 rows, 9.5% fraud)",
            f"{fraud_ecom.FULL_FILES[0]}, then optionally {fraud_ecom.FULL_FILES[1]}",
            max_paths=2,
        ),
        DatasetSpec(
            "paysim",
            (PAYSIM_FILE,),
            load_paysim,
            "PaySim mobile-money simulation, first 8 hours (19,999 rows, 0.41% fraud)",
            paysim.FULL_FILE,
        ),
        DatasetSpec(
            "sparkov",
            (SPARKOV_FILE,),
            load_sparkov,
            "Sparkov simulated card payments with merchant location, Jan 2019 (6,025 rows, 0.41% fraud)",
            f"{sparkov.FULL_FILES[0]} and {sparkov.FULL_FILES[1]} (one or more files, merged in time order)",
            max_paths=None,
        ),
    )
}


DATASET_PRESETS = {
    "handbook": "handbook_tuned",
    "fraud_ecom": "fraud_ecom",
    "paysim": "paysim",
    "sparkov": "sparkov",
}
"""The feature spec each public dataset trains with unless ``--features`` says otherwise."""


def dataset_paths(name: str, datasets_dir: Path) -> list[Path]:
    """Resolve a dataset's files under ``datasets_dir``, failing with the fix when one is missing."""
    spec = DATASETS.get(name)
    if spec is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    paths = [datasets_dir / relative for relative in spec.paths]
    for relative, path in zip(spec.paths, paths, strict=True):
        if not path.is_file():
            raise DatasetNotFoundError(
                f"dataset {name!r} expects {relative} in the datasets folder {datasets_dir}, "
                f"but {path} does not exist; set the folder with --datasets-dir or FRAUD_DATASETS_DIR"
            )
    return paths


def given_paths(name: str, paths: Sequence[Path]) -> list[Path]:
    """Check the files a user gave for dataset ``name``: their number and that each exists."""
    spec = DATASETS.get(name)
    if spec is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    out = [Path(p) for p in paths]
    most = spec.max_paths
    if len(out) < spec.min_paths or (most is not None and len(out) > most):
        raise ValueError(
            f"dataset {name!r} takes {spec.full_files}; got {len(out)} file{'s' if len(out) != 1 else ''}"
        )
    for path in out:
        if not path.is_file():
            raise DatasetNotFoundError(f"dataset {name!r}: no such file {path}")
    return out


def load_dataset(
    name: str,
    datasets_dir: Path | None,
    *,
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
    paths: Sequence[Path] | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Load a public dataset by name as a canonical frame sorted by timestamp.

    By default the dataset's files in ``datasets_dir`` (the samples); with ``paths``, those files
    instead, in the order the dataset's loader takes them (see :attr:`DatasetSpec.full_files`), for
    example the full public files. Raises :class:`UnknownDatasetError` for a name not in
    :data:`DATASETS` and :class:`DatasetNotFoundError` when a file is missing, both saying how to fix
    it, and :class:`ValueError` for the wrong number of ``paths``. A row that cannot be read refuses
    the file naming its line, or with ``skip_bad_rows`` is skipped and counted.
    """
    if paths is not None:
        files = given_paths(name, paths)
    elif datasets_dir is None:
        raise ValueError(f"dataset {name!r}: give the datasets folder or the dataset's files")
    else:
        files = dataset_paths(name, Path(datasets_dir))
    loader = DATASETS[name].loader
    return loader(*files, label_delay=label_delay, limit=limit, skip_bad_rows=skip_bad_rows)
