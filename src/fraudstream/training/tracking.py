"""Optional MLflow logging of a training run; training never needs MLflow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fraudstream.models.bundle import ModelBundle


class TrackingError(RuntimeError):
    """The run could not be logged to MLflow."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif value is not None:
        out[prefix] = value
    return out


def log_to_mlflow(
    tracking_uri: str,
    bundle: ModelBundle,
    bundle_path: Path,
    test_metrics: dict[str, Any],
    *,
    extra_tags: dict[str, Any] | None = None,
) -> str:
    """Log parameters, validation and test metrics, the data fingerprint and the bundle file (in the
    run's ``bundle/`` artifact folder, where the model registry finds it); return the MLflow run id.
    ``extra_tags`` values that are not text are logged as JSON."""
    try:
        import mlflow
    except ImportError:
        raise TrackingError(
            "FRAUD_MLFLOW_TRACKING_URI is set but MLflow is not installed: pip install 'fraudstream[mlflow]'"
        ) from None
    manifest = bundle.manifest
    params = _flatten("", {"params": manifest.params, "weights": manifest.weights}, {})
    numbers = _flatten("", {"validation": manifest.metrics.get("validation", {}), "test": test_metrics}, {})
    numbers = {
        k: float(v) for k, v in numbers.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    # MLflow prints the run's web address to stdout, which would corrupt `train --json`.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("fraudstream")
        with mlflow.start_run(run_name=manifest.version) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in numbers.items()})
            tags = {
                "feature_set": manifest.feature_set_version,
                "data_fingerprint": manifest.data_fingerprint,
            }
            for key, value in (extra_tags or {}).items():
                tags[key] = value if isinstance(value, str) else json.dumps(value, default=str)[:5000]
            mlflow.set_tags(tags)
            mlflow.log_artifact(str(bundle_path), artifact_path="bundle")
            return str(run.info.run_id)
    except Exception as exc:  # MLflow raises many types; the model is saved either way
        raise TrackingError(
            f"could not log to MLflow at {tracking_uri} ({type(exc).__name__}: {str(exc)[:300]}); "
            f"the bundle is saved at {bundle_path}"
        ) from None
