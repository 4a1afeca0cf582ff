"""The rules a running process follows, from where the settings say: a file, or the database's versions
(docs/decisions/0028-rules-versions-shadow-and-backtests.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraudstream.rules.loader import DEFAULT_RULES_PATH
from fraudstream.rules.names import default_known_names
from fraudstream.rules.reload import DatabaseRules, ReloadingRules

if TYPE_CHECKING:
    from fraudstream.config import Settings
    from fraudstream.features.plan import FeatureSet
    from fraudstream.storage import Store

LiveRules = ReloadingRules | DatabaseRules


def open_rules(settings: Settings, store: Store, feature_set: FeatureSet) -> LiveRules:
    """``FRAUD_RULES_SOURCE=file``: FRAUD_RULES_PATH (else the packaged rules), followed as it changes.
    ``database``: the newest saved version, polled every FRAUD_RULES_POLL_SECONDS; when none is saved
    yet, that file's text is stored first as version 1 (by whichever process starts first).

    The packaged rules are written for the default features: those reading a feature ``feature_set``
    lacks are left out with a warning; rules of your own must name only features the model has."""
    path = settings.rules_path or DEFAULT_RULES_PATH
    known = default_known_names(feature_set)
    skip_unknown = settings.rules_path is None
    if settings.rules_source == "file":
        return ReloadingRules(path, known, skip_unknown=skip_unknown)
    from fraudstream.rules.loader import load_rules

    repository = store.rules
    if repository.newest_version() is None:
        load_rules(path, known, skip_unknown=skip_unknown)  # a broken seed is refused before it is stored
        repository.seed(path.read_text(encoding="utf-8"), created_by=f"seed:{path.name}")
    return DatabaseRules(
        repository, known, check_interval=settings.rules_poll_seconds, skip_unknown=skip_unknown
    )
