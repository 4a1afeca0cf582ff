"""``fraudstream models gate`` and ``models promote --if-better`` as a scheduler runs them: exit 0 or 1 on
the comparison, and against a real MLflow server, a failed gate promotes nothing while a passed one
promotes the challenger and records the comparison with the verdict."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.models.bundle import load_bundle
from fraudstream.registry import register
from tests.integration.conftest import MLFLOW_URL, require


def write(path: Path, ap: tuple[float, float], recall: tuple[float, float]) -> Path:
    """A comparison.json shaped like retrain's: (champion, challenger) values of the two default metrics."""
    sides: dict[str, Any] = {
        side: {"metrics": {"average_precision": ap[i], "recall_at_1pct_fpr": recall[i], "roc_auc": 0.9}}
        for i, side in enumerate(("champion", "challenger"))
    }
    path.write_text(json.dumps(sides))
    return path


def test_gate_exits_0_when_better_and_1_naming_the_failed_metric(workdir: Path) -> None:
    runner = CliRunner()
    better = write(workdir / "better.json", (0.50, 0.52), (0.60, 0.65))
    passed = runner.invoke(cli, ["models", "gate", str(better)])
    assert passed.exit_code == 0, passed.output
    assert "gate passed" in passed.stdout

    worse = write(workdir / "worse.json", (0.50, 0.47), (0.60, 0.65))
    failed = runner.invoke(cli, ["models", "gate", str(worse)])
    assert failed.exit_code == 1
    assert "average_precision: FAILED" in failed.stderr and "lead -0.0300" in failed.stderr
    assert "recall_at_1pct_fpr: passed" in failed.stdout

    as_json = runner.invoke(cli, ["models", "gate", str(worse), "--gate", "roc_auc>=0", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["gate"] == "roc_auc>=0"


def test_gate_input_errors_exit_2_with_the_reason(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    better = write(workdir / "better.json", (0.50, 0.52), (0.60, 0.65))
    unknown = runner.invoke(cli, ["models", "gate", str(better), "--gate", "precision_at_7>0"])
    assert unknown.exit_code == 2 and "'precision_at_7'" in unknown.stderr
    missing = runner.invoke(cli, ["models", "gate", str(workdir / "nope.json")])
    assert missing.exit_code == 2 and "nope.json" in missing.stderr
    monkeypatch.setenv("FRAUD_PROMOTION_GATE", "average_precision")
    bad_setting = runner.invoke(cli, ["models", "gate", str(better)])
    assert bad_setting.exit_code == 2 and "promotion_gate" in bad_setting.stderr


def test_promote_if_better_with_a_version_and_a_gate_needs_if_better(workdir: Path) -> None:
    runner = CliRunner()
    lone_gate = runner.invoke(cli, ["models", "promote", "--challenger", "--gate", "roc_auc>0"])
    assert lone_gate.exit_code == 2 and "--if-better" in lone_gate.stderr


@pytest.mark.mlflow
def test_a_failed_gate_promotes_nothing_and_a_passed_one_records_the_verdict(
    tmp_path: Path, bundle_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-gate-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path / "reg", mlflow_tracking_uri=url, model_registry_name=name)
    register(bundle_path, {"average_precision": 0.6}, settings=settings)
    register(bundle_path, {"average_precision": 0.7}, settings=settings)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("FRAUD_MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("FRAUD_MODEL_REGISTRY_NAME", name)
    runner = CliRunner()

    def aliases() -> list[list[str]]:
        listed = runner.invoke(cli, ["models", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        return [v["aliases"] for v in json.loads(listed.stdout)["versions"]]

    worse = write(tmp_path / "worse.json", (0.50, 0.52), (0.60, 0.58))
    refused = runner.invoke(cli, ["models", "promote", "--challenger", "--if-better", str(worse)])
    assert refused.exit_code == 1
    assert "recall_at_1pct_fpr: FAILED" in refused.stderr and "nothing promoted" in refused.stderr
    assert aliases() == [["challenger"], ["champion"]]

    better = write(tmp_path / "better.json", (0.50, 0.52), (0.60, 0.62))
    other = json.loads(better.read_text())
    other["challenger"]["version"] = "20260101T000000-another"
    (tmp_path / "other.json").write_text(json.dumps(other))
    stale = runner.invoke(
        cli, ["models", "promote", "--challenger", "--if-better", str(tmp_path / "other.json")]
    )
    assert stale.exit_code == 2 and "20260101T000000-another" in stale.stderr
    assert aliases() == [["challenger"], ["champion"]]

    other["challenger"]["version"] = load_bundle(bundle_path).manifest.version  # the one registered
    better.write_text(json.dumps(other))
    done = runner.invoke(cli, ["models", "promote", "--challenger", "--if-better", str(better), "--json"])
    assert done.exit_code == 0, done.output
    promoted = json.loads(done.stdout)
    assert (promoted["from_version"], promoted["to_version"]) == ("1", "2")
    assert promoted["comparison"]["gate"]["passed"] is True
    assert promoted["comparison"]["challenger"]["metrics"]["average_precision"] == 0.52
    assert "champion" in aliases()[0]
