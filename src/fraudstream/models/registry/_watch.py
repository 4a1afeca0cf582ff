"""Follow a registry alias while serving: a promotion reaches running servers without a restart.

With ``FRAUD_MODEL_URI=models:/NAME@ALIAS``, :class:`ModelWatcher` resolves the alias every
``FRAUD_MODEL_POLL_SECONDS`` on a background thread; when it names another version, that version is
downloaded (or taken from the cache) and loaded off the scoring path, then swapped into the scorer
between two batches (:meth:`fraudstream.scoring.scorer.Scorer.use`). A version that cannot be swapped
in place (another feature set) or cannot be fetched is logged and the served model keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from fraudstream.config import Settings
from fraudstream.models.bundle import BundleError
from fraudstream.models.registry._client import Registry
from fraudstream.models.registry._serving import ModelSource, fetch
from fraudstream.models.registry._uri import ModelUri, is_registry_uri

if TYPE_CHECKING:
    from fraudstream.scoring.scorer import Scorer

log = logging.getLogger(__name__)


class Serving(Protocol):
    """What the watcher keeps current: the scorer and where its model came from."""

    scorer: Scorer
    model_source: ModelSource | None


class ModelWatcher:
    """Keeps ``serving``'s model on the version the alias of ``FRAUD_MODEL_URI`` names; ``on_swap`` is
    called with the line logged for each swap (a command prints it where its operator looks)."""

    def __init__(
        self,
        serving: Serving,
        settings: Settings,
        uri: ModelUri,
        on_swap: Callable[[str], None] | None = None,
    ) -> None:
        self.serving = serving
        self._on_swap = on_swap
        self.uri = uri
        self.poll_seconds = settings.model_poll_seconds
        self._settings = settings
        self._lock = threading.Lock()
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Resolve the alias now and swap in the version it names if that is not the one served;
        whether a swap happened. Never raises: a failure is logged and the served model stays."""
        with self._lock:
            try:
                return self._check()
            except Exception:
                log.exception("model: could not follow %s; the served model keeps serving", self.uri)
                return False

    def _check(self) -> bool:
        from fraudstream.scoring.scorer import ModelSwapError

        assert self._settings.mlflow_tracking_uri is not None
        registry = Registry(self._settings.mlflow_tracking_uri, self.uri.name)
        version = registry.resolve(self.uri).version
        served = self.serving.model_source
        if (served is not None and served.registry_version == version) or version == self._refused:
            return False
        bundle, source = fetch(registry, self.uri, self._settings.data_dir)
        before = served.registry_version if served is not None else None
        model_before = self.serving.scorer.version
        try:
            self.serving.scorer.use(bundle)
        except (ModelSwapError, BundleError) as error:
            self._refused = source.registry_version
            log.error(
                "model: %s now names version %s, which cannot be served in place (%s); version %s keeps "
                "serving until a restart",
                self.uri, source.registry_version, error, before,
            )  # fmt: skip
            return False
        self.serving.model_source = source
        self._refused = None
        line = (
            f"model: {self.uri} swapped in place, version {before} (model {model_before}) -> "
            f"version {source.registry_version} (model {bundle.manifest.version})"
        )
        log.info("%s", line)
        if self._on_swap is not None:
            self._on_swap(line)
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
    """A started watcher when ``FRAUD_MODEL_URI`` names a registry alias (a pinned version or a file
    never changes, so there is nothing to follow), else ``None``."""
    text = (settings.model_uri or "").strip()
    if not is_registry_uri(text) or not settings.mlflow_tracking_uri:
        return None
    uri = ModelUri.parse(text)
    if uri.alias is None:
        return None
    return ModelWatcher(serving, settings, uri, on_swap).start()
