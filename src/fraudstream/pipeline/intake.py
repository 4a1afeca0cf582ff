"""How the live paths read an event: a canonical transaction, or a team's own event through the mapping
the served model was trained with.

Every way in (``POST /v1/score``, ``POST /v1/transactions``, the Redis and Kafka consumers) asks the
one :class:`Intake` of its process, so a team's event reads the same on each. The mapping follows the
served model: a promoted model trained through another mapping reads events through that one from its
first batch. ``FRAUD_INPUT_MAPPING`` names a mapping file to use instead (a team whose live events are
shaped otherwise than the file it trained on), or ``none`` for canonical transactions only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fraudstream.events.mapping import ColumnMapping, EventMapping, read_mapping
from fraudstream.models.bundle import ModelBundle

NONE = "none"
"""``FRAUD_INPUT_MAPPING`` value for canonical transactions, whatever mapping the model carries."""


class Intake:
    """The mapping live events are read through, or ``None`` for canonical transactions."""

    def __init__(self, bundle_of: Callable[[], ModelBundle], configured: str | None = None) -> None:
        self._bundle_of = bundle_of
        self._configured = configured
        self._seen: ModelBundle | None = None
        self._mapping: EventMapping | None = None
        self._file: ColumnMapping | None = None
        if configured is not None and configured.strip().lower() != NONE:
            self._file = read_mapping(Path(configured))  # a mistake in it stops the start, saying which
        self.mapping  # noqa: B018 -- the bundle's mapping checked at start, not at the first event

    @property
    def mapping(self) -> EventMapping | None:
        bundle = self._bundle_of()
        if bundle is not self._seen:
            self._mapping = self._for(bundle)
            self._seen = bundle
        return self._mapping

    def _for(self, bundle: ModelBundle) -> EventMapping | None:
        kinds = bundle.feature_set().kinds
        if self._file is not None:
            return EventMapping(self._file, kinds)
        stored = bundle.manifest.input_mapping
        if stored is None or self._configured is not None:  # FRAUD_INPUT_MAPPING=none
            return None
        return EventMapping.from_dict(stored, kinds, source=f"the mapping of model {bundle.manifest.version}")
