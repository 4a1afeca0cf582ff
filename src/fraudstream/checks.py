"""Dependency checks: is each configured part reachable, and which version answers.

``fraudstream check`` runs them from the settings alone, each part opened on its own so one broken
URL does not hide the state of the others; ``GET /ready`` runs the same checks on the services a
running process already holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fraudstream.brokers import BrokerError, open_broker
from fraudstream.config import Settings
from fraudstream.models.bundle import BundleError, check_compatible, read_manifest
from fraudstream.state import StateError, open_state
from fraudstream.storage import StorageError, open_store

FAILURES = (StorageError, BrokerError, StateError, BundleError, FileNotFoundError)


@dataclass
class Check:
    """One dependency: what it is, where (credentials masked), and what answered or what is wrong."""

    name: str
    target: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def _run(name: str, target: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, target, True, probe())
    except FAILURES as error:
        return Check(name, target, False, str(error))


def check_settings(settings: Settings) -> list[Check]:
    """Open and ping the database, broker, feature state and model that ``settings`` name."""
    from fraudstream.features.engine import default_feature_set

    checks = [_run("database", masked(settings.db_url), lambda: _database(settings))]
    checks.append(_run("broker", masked(settings.broker_url), lambda: _broker(settings)))
    checks.append(
        _run(
            "state",
            masked(settings.state_url),
            lambda: _ping_state(settings.state_url, default_feature_set().retention),
        )
    )
    checks.append(_run("model", settings.model_uri or str(settings.bundle_path), lambda: _model(settings)))
    return checks


def _database(settings: Settings) -> str:
    store = open_store(settings.db_url, pool_size=1)
    try:
        return store.ping()
    finally:
        store.close()


def _broker(settings: Settings) -> str:
    store = open_store(settings.db_url, pool_size=1)
    try:
        broker = open_broker(settings.broker_url, store, group=settings.consumer_group)
        try:
            return broker.ping()
        finally:
            broker.close()
    except StorageError as error:
        raise BrokerError(f"the database:// broker needs the database: {error}") from None
    finally:
        store.close()


def _ping_state(url: str, retention: float) -> str:
    state = open_state(url, retention=retention)
    try:
        return state.ping()
    finally:
        state.close()


def _model(settings: Settings) -> str:
    from pathlib import Path

    from fraudstream.registry import ModelUri, Registry, RegistryUnavailableError, is_registry_uri

    uri = (settings.model_uri or "").strip()
    if uri and is_registry_uri(uri):  # resolved, not downloaded: serving downloads it
        parsed = ModelUri.parse(uri)
        if not settings.mlflow_tracking_uri:
            raise RegistryUnavailableError(f"{uri} needs FRAUD_MLFLOW_TRACKING_URI (the MLflow server)")
        info = Registry(settings.mlflow_tracking_uri, parsed.name).resolve(parsed)
        return f"registry version {info.version} (model {info.tags.get('fraudstream.model_version', '?')})"
    path = Path(uri.removeprefix("file://")) if uri else settings.bundle_path
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: `fraudstream train`, or set FRAUD_MODEL_PATH")
    manifest = read_manifest(path)
    feature_set = check_compatible(manifest, path)
    return f"model {manifest.version}, {feature_set.describe()}"


def _served_from(services: Any) -> str:
    source = getattr(services, "model_source", None)
    if source is None:
        return str(services.settings.bundle_path)
    if source.registry_version:
        return f"{source.uri} (version {source.registry_version})"
    return str(source.path)


def check_running(services: Any) -> list[Check]:
    """The same checks against the parts a running process holds (its ``Services``)."""
    s = services.settings
    checks = [
        _run("database", masked(s.db_url), services.store.ping),
        _run("broker", masked(s.broker_url), services.broker.ping),
        _run("state", masked(s.state_url), services.state.ping),
        _run("model", _served_from(services), lambda: f"model {services.scorer.version}"),
    ]
    challenger = getattr(services.scorer, "challenger", None)
    if challenger is not None:  # FRAUD_CHALLENGER_URI: loaded and checked at start-up, scored in shadow
        shadow = f"model {challenger.manifest.version} in shadow"
        checks.append(Check("challenger", s.challenger_uri or "", True, shadow))
    return checks
