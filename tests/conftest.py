"""Shared fixtures: where the public sample datasets are, and what to do when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared datasets folder; skip on a fresh machine, fail in CI (``FRAUD_REQUIRE_DATASETS=1``)."""
    path = Path(os.environ.get("FRAUD_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
    if not path.is_dir():
        reason = f"shared datasets not found at {path}: set FRAUD_DATASETS_DIR"
        if os.environ.get("FRAUD_REQUIRE_DATASETS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
