"""Data flows one way (events → features → scores → decisions → storage and alerts): importing a part
never imports what comes after it, nor training and its libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""

AFTER_SCORING = ("fraudstream.storage", "fraudstream.training", "fraudstream.worker", "fraudstream.api")
HEAVY = ("sklearn", "sqlalchemy", "optuna", "xgboost")


def loaded_by(module: str) -> list[str]:
    """Every module a fresh interpreter has loaded after importing ``module``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(done.stdout))


def under(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_the_domain_records_depend_on_no_other_part() -> None:
    loaded = loaded_by("fraudstream.events")
    ours = [m for m in under(loaded, "fraudstream") if m != "fraudstream"]
    assert ours and not [m for m in ours if not m.startswith("fraudstream.events")]
    assert not under(loaded, *HEAVY)


@pytest.mark.parametrize("module", ["fraudstream.features.engine", "fraudstream.pipeline.scorer"])
def test_features_and_scoring_import_neither_storage_nor_training(module: str) -> None:
    loaded = loaded_by(module)
    assert module in loaded
    assert not under(loaded, *AFTER_SCORING, *HEAVY)


@pytest.mark.parametrize("module", ["fraudstream.models.bundle", "fraudstream.models.ensemble"])
def test_the_model_file_and_maths_stand_apart_from_training_and_scoring(module: str) -> None:
    loaded = loaded_by(module)
    assert module in loaded
    assert not under(loaded, "fraudstream.scoring", *AFTER_SCORING, *HEAVY)


def test_drift_monitoring_imports_none_of_its_users_nor_training() -> None:
    loaded = loaded_by("fraudstream.monitoring")
    assert "fraudstream.monitoring.drift" in loaded
    users = ("fraudstream.api", "fraudstream.worker", "fraudstream.commands", "fraudstream.scoring")
    assert not under(loaded, *users, "fraudstream.storage", "fraudstream.training", *HEAVY)
