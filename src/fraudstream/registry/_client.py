"""The MLflow Model Registry as fraudstream uses it: versions of one registered model and three aliases.

``challenger`` is the newest registered version, ``champion`` the one that serves, ``previous`` the
champion before the last promotion (what ``rollback`` goes back to). Every call goes through
:meth:`Registry._call`, which turns MLflow's many failures into a :class:`RegistryError` saying what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fraudstream.registry._uri import ModelUri, RegistryError, RegistryUnavailableError

T = TypeVar("T")

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
#: The artifact folder of a run that holds the bundle file; a version's source is ``runs:/<run>/bundle``.
BUNDLE_ARTIFACT = "bundle"
#: Metrics of a version's run shown beside it (``fraudstream models list``, ``GET /v1/models``).
KEY_METRICS = (
    "test.average_precision",
    "test.roc_auc",
    "test.card_precision_at_100",
    "validation.average_precision",
)
#: Tag values longer than this are cut (MLflow refuses longer ones).
TAG_LIMIT = 5000
#: MLflow retries an unreachable server for minutes by default; a command or a starting server should
#: say "unreachable" within seconds. Set only where the environment does not set them already.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version: its aliases, its run, its tags and its run's key metrics."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    created_at: datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return str(ModelUri(self.name, version=self.version))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "source": self.source,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "model_version": self.tags.get("fraudstream.model_version"),
            "metrics": self.metrics,
            "tags": self.tags,
        }


def _tag(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:TAG_LIMIT]


class Registry:
    """The registered model ``name`` on the MLflow server at ``tracking_uri``; connects on first use."""

    def __init__(self, tracking_uri: str, name: str = "fraudstream") -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self._client: Any = None

    def client(self) -> Any:
        """The ``MlflowClient``; :class:`RegistryError` when MLflow is not installed."""
        if self._client is None:
            try:
                from mlflow import MlflowClient
            except ImportError:
                raise RegistryUnavailableError(
                    "the model registry needs MLflow's client: pip install 'fraudstream[mlflow]'"
                ) from None
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RegistryError:
            raise
        except Exception as exc:  # MLflow raises many types: RestException, MlflowException, requests'
            code = getattr(exc, "error_code", "")
            text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise RegistryError(f"{what}: {text}") from None
            raise RegistryUnavailableError(
                f"{what}: the MLflow server at {self.tracking_uri} did not answer ({type(exc).__name__}: "
                f"{text}); start it (`make services` runs one on 127.0.0.1:5050) or fix "
                "FRAUD_MLFLOW_TRACKING_URI"
            ) from None

    # ---------------------------------------------------------------- reading

    def aliases(self) -> dict[str, str]:
        """Alias → version of the registered model; empty when the model is not registered yet."""
        client = self.client()

        def read() -> dict[str, str]:
            try:
                model = client.get_registered_model(self.name)
            except Exception as exc:
                if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise
            return {str(k): str(v) for k, v in (model.aliases or {}).items()}

        return self._call(f"reading the aliases of {self.name!r}", read)

    def _info(self, mv: Any, aliases: dict[str, str], metrics: bool) -> VersionInfo:
        version = str(mv.version)
        numbers: dict[str, float] = {}
        if metrics and mv.run_id:
            run = self._call(f"reading run {mv.run_id}", lambda: self.client().get_run(mv.run_id))
            numbers = {k: float(v) for k, v in run.data.metrics.items() if k in KEY_METRICS}
        created = mv.creation_timestamp
        return VersionInfo(
            name=self.name,
            version=version,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            run_id=mv.run_id or None,
            source=str(mv.source),
            created_at=datetime.fromtimestamp(created / 1000, UTC) if created else None,
            tags=dict(mv.tags or {}),
            metrics=numbers,
        )

    def versions(self, *, metrics: bool = True) -> list[VersionInfo]:
        """Every version, newest first, with its aliases (and its run's key metrics)."""
        aliases = self.aliases()
        found = self._call(
            f"listing the versions of {self.name!r}",
            lambda: self.client().search_model_versions(f"name = '{self.name}'"),
        )
        infos = [self._info(mv, aliases, metrics) for mv in found]
        return sorted(infos, key=lambda i: int(i.version), reverse=True)

    def get(self, version: str) -> VersionInfo:
        """Version ``version``; :class:`RegistryError` when it does not exist."""
        mv = self._call(
            f"model {self.name!r} version {version}",
            lambda: self.client().get_model_version(self.name, version),
        )
        return self._info(mv, self.aliases(), metrics=False)

    def resolve(self, uri: ModelUri) -> VersionInfo:
        """The version ``uri`` names (its alias resolved now)."""
        if uri.name != self.name:
            return Registry(self.tracking_uri, uri.name).resolve(uri)
        if uri.version is not None:
            return self.get(uri.version)
        alias = uri.alias or CHAMPION
        client = self.client()

        def by_alias() -> Any:
            try:
                return client.get_model_version_by_alias(self.name, alias)
            except Exception as exc:
                if getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                    raise RegistryError(
                        f"{uri}: the registered model {self.name!r} has no alias {alias!r} at "
                        f"{self.tracking_uri}; register one (`fraudstream train --register`) or promote "
                        "a version (`fraudstream models promote VERSION`)"
                    ) from None
                raise

        return self._info(self._call(str(uri), by_alias), self.aliases(), metrics=False)

    def download(self, info: VersionInfo, into: Path) -> Path:
        """Download the bundle of ``info`` into the folder ``into``; the path of its ``.fsb`` file."""
        import mlflow.artifacts

        self.client()
        into.mkdir(parents=True, exist_ok=True)
        got = self._call(
            f"downloading {info.uri} from {info.source}",
            lambda: mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(into), tracking_uri=self.tracking_uri
            ),
        )
        root = Path(got)
        files = [root] if root.is_file() else sorted(root.rglob("*.fsb"))
        if len(files) != 1:
            raise RegistryError(
                f"{info.uri}: expected one model bundle (.fsb) at {info.source}, found {len(files)}; "
                "register bundles with `fraudstream train --register`"
            )
        return files[0]

    # ---------------------------------------------------------------- writing

    def create_version(self, run_id: str, tags: dict[str, Any]) -> VersionInfo:
        """A new version of the registered model (created first if needed) from run ``run_id``'s bundle."""
        client = self.client()

        def create() -> Any:
            try:
                client.create_registered_model(self.name, description="fraudstream model bundles (.fsb)")
            except Exception as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            return client.create_model_version(
                self.name,
                source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}",
                run_id=run_id,
                tags={k: _tag(v) for k, v in tags.items()},
            )

        mv = self._call(f"registering run {run_id} as a version of {self.name!r}", create)
        return self._info(mv, {}, metrics=False)

    def set_alias(self, alias: str, version: str) -> None:
        self._call(
            f"setting alias {alias!r} to version {version}",
            lambda: self.client().set_registered_model_alias(self.name, alias, version),
        )

    def delete_alias(self, alias: str) -> None:
        self._call(
            f"deleting alias {alias!r}", lambda: self.client().delete_registered_model_alias(self.name, alias)
        )

    def tag(self, version: str, tags: dict[str, Any]) -> None:
        client = self.client()

        def write() -> None:
            for key, value in tags.items():
                client.set_model_version_tag(self.name, version, key, _tag(value))

        self._call(f"tagging version {version}", write)
