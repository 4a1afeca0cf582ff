"""What the end-to-end tests share: a working folder a command line user would have."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder as the current directory, with the data folder inside and no MLflow."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
