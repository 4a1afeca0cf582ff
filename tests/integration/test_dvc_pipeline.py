"""dvc.yaml and params.yaml in a real DVC (``make test-dvc``): ``dvc repro`` builds the bundle from the data
and the parameters, ``dvc metrics show`` prints the evaluation, and a changed parameter reruns only the
stages that read it.

DVC lives in its own virtual environment; ``make test-dvc`` installs it and names its ``dvc`` executable
in FRAUD_TEST_DVC. Without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.dvc, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OUT = Path("fraudstream-data/pipeline")


@pytest.fixture(scope="module")
def dvc_bin() -> Path:
    path = os.environ.get("FRAUD_TEST_DVC")
    if not path:
        pytest.skip("needs DVC in its own venv: run `make test-dvc`")
    return Path(path).resolve()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dvc_bin: Path) -> Path:
    """A copy of the pipeline and the code it depends on, in a fresh DVC project, with small parameters."""
    folder = tmp_path_factory.mktemp("dvc-project")
    shutil.copy(ROOT / "dvc.yaml", folder)
    shutil.copytree(ROOT / "src" / "fraudstream", folder / "src" / "fraudstream")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] |= {"customers": 300, "days": 30}
    params["train"] |= {"trials": 0, "models": "xgboost,logistic"}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    git(folder, "init", "-q")
    dvc(dvc_bin, folder, "init", "-q")
    dvc(dvc_bin, folder, "config", "core.analytics", "false")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "pipeline")
    return folder


def git(folder: Path, *args: str) -> None:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    who |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=folder, env=os.environ | who, check=True, timeout=60)


def dvc(dvc_bin: Path, folder: Path, *args: str) -> str:
    """Run ``dvc ARGS`` in ``folder`` with the project's ``fraudstream`` first on PATH; its output."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FRAUD_MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [str(dvc_bin), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def metrics(folder: Path) -> dict[str, object]:
    return json.loads((folder / OUT / "metrics.json").read_text())


def test_repro_builds_the_bundle_and_metrics_show_prints_the_evaluation(dvc_bin: Path, project: Path) -> None:
    dvc(dvc_bin, project, "repro")
    assert (project / OUT / "model.fsb").stat().st_size > 0
    first = metrics(project)
    assert 0.5 < float(first["roc_auc"]) <= 1.0  # type: ignore[arg-type]

    shown = json.loads(dvc(dvc_bin, project, "metrics", "show", "--json"))
    values = next(iter(shown.values()))["data"][str(OUT / "metrics.json")]["data"]
    assert values["roc_auc"] == first["roc_auc"]
    assert "up to date" in dvc(dvc_bin, project, "status")

    # The bundle is rebuilt from the data and parameters alone, to the same evaluation.
    (project / OUT / "model.fsb").unlink()
    log = dvc(dvc_bin, project, "repro")
    assert "Running stage 'train'" in log and "Running stage 'prepare'" not in log
    assert metrics(project)["roc_auc"] == first["roc_auc"]
    assert metrics(project)["model"] != first["model"]


def test_a_changed_parameter_reruns_only_the_stages_that_read_it(dvc_bin: Path, project: Path) -> None:
    dvc(dvc_bin, project, "repro")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first run")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["flag_fpr"] = 0.02
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert "train.flag_fpr" in dvc(dvc_bin, project, "params", "diff")

    log = dvc(dvc_bin, project, "repro")
    assert "Running stage 'train'" in log and "Running stage 'evaluate'" in log
    assert "Running stage 'generate'" not in log and "Running stage 'prepare'" not in log
    assert json.loads((project / OUT / "train.json").read_text())["thresholds"]["flag"] > 0
    assert "up to date" in dvc(dvc_bin, project, "status")
