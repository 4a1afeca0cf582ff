"""``fraudstream demo`` trains its model when there is none, and again when the one it finds was saved by
an earlier version in a bundle format this one no longer reads; a current model is kept."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraudstream.commands import demo, training
from fraudstream.config import Settings
from fraudstream.models.bundle import BUNDLE_FORMAT


def bundle_of_format(path: Path, source: Path, bundle_format: int) -> None:
    """``source`` copied to ``path`` with its manifest claiming ``bundle_format``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "manifest.json":
                data = json.dumps(json.loads(data) | {"bundle_format": bundle_format}).encode()
            new.writestr(item, data)


@pytest.mark.parametrize(("bundle_format", "trained"), [(1, True), (BUNDLE_FORMAT, False)])
def test_the_demo_trains_again_only_a_model_of_an_earlier_format(
    workdir: Path,
    bundle_path: Path,
    small_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    bundle_format: int,
    trained: bool,
) -> None:
    settings = Settings()
    settings.data_dir.mkdir(parents=True)
    small_frame.head(100).to_parquet(settings.data_dir / "transactions.parquet")
    bundle_of_format(settings.bundle_path, bundle_path, bundle_format)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(training, "train", lambda **kw: calls.append(kw))
    demo.prepare(settings, trials=0)
    assert bool(calls) is trained
