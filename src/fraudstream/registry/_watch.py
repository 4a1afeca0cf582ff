"""Follow a registry alias while serving: a promotion reaches running servers without a restart.

With ``FRAUD_MODEL_URI=models:/NAME@ALIAS``, :class:`ModelWatcher` resolves the alias every
``FRAUD_MODEL_POLL_SECONDS`` on a background thread; when it names another version, that version is
downloaded (or taken from the cache) and loaded off the scoring path, then swapped into the scorer
between two batches (:meth:`fraudstream.pipeline.scorer.Scorer.use`). A version that cannot be swapped
in place (another feature set) or cannot be fetched is logged and the served model keeps serving.

With ``FRAUD_CHALLENGER_URI=models:/NAME@ALIAS`` the same poll follows the challenger in shadow: a new
version is loaded off the scoring path and swapped in beside the current champion; one on another
feature set is refused (logged) and the old challenger keeps shadowing; when the alias is gone,
shadowing stops (logged) and resumes when it names a version again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from fraudstream.config import Settings
from fraudstream.models.bundle import BundleError
from fraudstream.registry._client import Registry
from fraudstream.registry._serving import ModelSource, fetch
from fraudstream.registry._uri import (
    ModelUri,
    RegistryError,
    RegistryUnavailableError,
    is_registry_uri,
)

if TYPE_CHECKING:
    from fraudstream.pipeline.scorer import Scorer

log = logging.getLogger(__name__)


class Serving(Protocol):
    """What the watcher keeps current: the scorer and where its model came from."""

    scorer: Scorer
    model_source: ModelSource | None
    challenger_source: ModelSource | None


class ModelWatcher:
    """Keeps ``serving``'s model on the version the alias ``uri`` names (``None``: the champion is not
    followed) and its challenger on the version ``challenger_uri`` names (``None``: not followed);
    ``on_swap`` is called with the line logged for each swap (a command prints it where its operator
    looks). ``registry`` opens the registered model of a name (default: the MLflow server of
    ``settings``)."""

    def __init__(
        self,
        serving: Serving,
        settings: Settings,
        uri: ModelUri | None,
        on_swap: Callable[[str], None] | None = None,
        *,
        challenger_uri: ModelUri | None = None,
        registry: Callable[[str], Registry] | None = None,
    ) -> None:
        self.serving = serving
        self._on_swap = on_swap
        self.uri = uri
        self.challenger_uri = challenger_uri
        self._registry = registry or self._mlflow_registry
        self._challenger_refused: str | None = None
        self.poll_seconds = settings.model_poll_seconds
        self._settings = settings
        self._lock = threading.Lock()
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _mlflow_registry(self, name: str) -> Registry:
        assert self._settings.mlflow_tracking_uri is not None
        return Registry(self._settings.mlflow_tracking_uri, name)

    def check(self) -> bool:
        """Resolve the aliases now and swap in the versions they name where those are not the ones
        served; whether anything changed. Never raises: a failure is logged and what serves stays."""
        changed = False
        with self._lock:
            if self.uri is not None:
                try:
                    changed = self._check(self.uri)
                except Exception:
                    log.exception("model: could not follow %s; the served model keeps serving", self.uri)
            if self.challenger_uri is not None:
                try:
                    changed = self._check_challenger(self.challenger_uri) or changed
                except Exception:
                    log.exception(
                        "model: could not follow challenger %s; the challenger in shadow stays",
                        self.challenger_uri,
                    )
        return changed

    def _check_challenger(self, uri: ModelUri) -> bool:
        from fraudstream.pipeline.scorer import ModelSwapError

        registry = self._registry(uri.name)
        shadowed = self.serving.challenger_source
        before = shadowed.registry_version if shadowed is not None else None
        try:
            version = registry.resolve(uri).version
        except RegistryUnavailableError:
            raise
        except RegistryError as error:  # the alias is gone: nothing to shadow
            if self.serving.scorer.challenger is None:
                return False
            self.serving.scorer.use(self.serving.scorer.bundle, challenger=None)
            self.serving.challenger_source = None
            self._challenger_refused = None
            self._report(f"model: challenger {uri} no longer names a version, shadowing stopped ({error})")
            return True
        if (
            before == version and self.serving.scorer.challenger is not None
        ) or version == self._challenger_refused:
            return False
        try:
            bundle, source = fetch(registry, uri, self._settings.data_dir)
            self.serving.scorer.use(self.serving.scorer.bundle, challenger=bundle)
        except RegistryError:
            raise  # the registry failed, not the version: try again on the next poll
        except (ModelSwapError, BundleError) as error:  # it does not load or reads another feature set
            self._challenger_refused = version
            log.error(
                "model: challenger %s now names version %s, which cannot shadow the champion (%s); "
                "version %s keeps shadowing",
                uri, version, error, before,
            )  # fmt: skip
            return False
        self.serving.challenger_source = source
        self._challenger_refused = None
        self._report(
            f"model: challenger {uri} swapped in shadow, version {before} -> version "
            f"{source.registry_version} (model {bundle.manifest.version})"
        )
        return True

    def _report(self, line: str) -> None:
        log.info("%s", line)
        if self._on_swap is not None:
            self._on_swap(line)

    def _check(self, uri: ModelUri) -> bool:
        from fraudstream.pipeline.scorer import ModelSwapError

        registry = self._registry(uri.name)
        version = registry.resolve(uri).version
        served = self.serving.model_source
        if (served is not None and served.registry_version == version) or version == self._refused:
            return False
        bundle, source = fetch(registry, uri, self._settings.data_dir)
        before = served.registry_version if served is not None else None
        model_before = self.serving.scorer.version
        try:
            self.serving.scorer.use(bundle)
        except (ModelSwapError, BundleError) as error:
            self._refused = source.registry_version
            log.error(
                "model: %s now names version %s, which cannot be served in place (%s); version %s keeps "
                "serving until a restart",
                uri, source.registry_version, error, before,
            )  # fmt: skip
            return False
        self.serving.model_source = source
        if self.serving.scorer.challenger is None:  # a challenger the new champion cannot shadow is dropped
            self.serving.challenger_source = None
        self._refused = None
        self._report(
            f"model: {uri} swapped in place, version {before} (model {model_before}) -> "
            f"version {source.registry_version} (model {bundle.manifest.version})"
        )
        return True

    def start(self) -> ModelWatcher:
        """Poll every ``FRAUD_MODEL_POLL_SECONDS`` on a daemon thread (none when it is 0)."""
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()


def watch_model(
    serving: Serving, settings: Settings, on_swap: Callable[[str], None] | None = None
) -> ModelWatcher | None:
    """A started watcher when ``FRAUD_MODEL_URI`` or ``FRAUD_CHALLENGER_URI`` names a registry alias (a
    pinned version or a file never changes, so there is nothing to follow), else ``None``."""
    if not settings.mlflow_tracking_uri:
        return None
    uri = _alias(settings.model_uri)
    challenger = _alias(settings.challenger_uri)
    if uri is None and challenger is None:
        return None
    return ModelWatcher(serving, settings, uri, on_swap, challenger_uri=challenger).start()


def _alias(setting: str | None) -> ModelUri | None:
    text = (setting or "").strip()
    if not is_registry_uri(text):
        return None
    uri = ModelUri.parse(text)
    return uri if uri.alias is not None else None
