"""Registering bundles and moving ``champion``: the registry's aliases and tags, and our own record.

A promotion moves the aliases in MLflow first (that is what serving reads), then tags the versions
and records the move in our database (``store.promotions``). Running servers keep the model they
loaded: they pick the new champion up when they restart.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudstream.registry._client import CHALLENGER, CHAMPION, PREVIOUS, Registry
from fraudstream.registry._uri import RegistryConflictError

if TYPE_CHECKING:
    from fraudstream.storage.promotions import Promotion
    from fraudstream.storage.store import Store


def default_author() -> str:
    """Who is promoting when nobody says: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment nor the password database
        return "unknown"


def register_run(registry: Registry, run_id: str, bundle_path: Path) -> tuple[Any, bool]:
    """Register the bundle run ``run_id`` logged as a new version, alias it ``challenger``, and also
    ``champion`` when the model has none yet (its first version). The version and whether it became
    champion."""
    from fraudstream.models.bundle import read_manifest

    manifest = read_manifest(bundle_path)
    tags = {
        "fraudstream.model_version": manifest.version,
        "fraudstream.feature_set": manifest.feature_set_version,
        "fraudstream.data_fingerprint": manifest.data_fingerprint,
    }
    info = registry.create_version(run_id, tags)
    registry.set_alias(CHALLENGER, info.version)
    first = CHAMPION not in registry.aliases()
    if first:
        registry.set_alias(CHAMPION, info.version)
        registry.tag(info.version, _promotion_tags("register", None, default_author(), None))
    return registry.get(info.version), first


def _promotion_tags(action: str, previous: str | None, by: str, comparison: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {
        "fraudstream.promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fraudstream.promoted_by": by,
        "fraudstream.promotion": action,
        "fraudstream.promoted_from": previous or "",
    }
    if comparison is not None:
        tags["fraudstream.comparison"] = comparison
    return tags


def _record(store: Store | None, promotion: Promotion) -> Promotion:
    return store.promotions.add(promotion) if store is not None else promotion


def promote(
    registry: Registry,
    version: str | None = None,
    *,
    by: str | None = None,
    comparison: dict[str, Any] | None = None,
    store: Store | None = None,
) -> Promotion:
    """Make ``version`` (default: the ``challenger``) the ``champion``; the old champion becomes
    ``previous``, and ``challenger`` goes when it is the version promoted. Recorded in ``store``."""
    from fraudstream.storage.promotions import Promotion

    aliases = registry.aliases()
    if version is None:
        version = aliases.get(CHALLENGER)
        if version is None:
            raise RegistryConflictError(
                f"model {registry.name!r} has no challenger: register one (`fraudstream train --register` "
                "or `fraudstream retrain --register`) or name a version"
            )
    target = registry.get(str(version))  # RegistryError when it does not exist
    current = aliases.get(CHAMPION)
    if current == target.version:
        raise RegistryConflictError(f"version {target.version} of {registry.name!r} is already the champion")
    author = by or default_author()
    registry.set_alias(CHAMPION, target.version)
    if current is not None:
        registry.set_alias(PREVIOUS, current)
        registry.tag(current, {"fraudstream.demoted_at": datetime.now(UTC).isoformat(timespec="seconds")})
    if aliases.get(CHALLENGER) == target.version:
        registry.delete_alias(CHALLENGER)
    registry.tag(target.version, _promotion_tags("promote", current, author, comparison))
    return _record(
        store,
        Promotion(
            registry.name, "promote", target.version, author, from_version=current, comparison=comparison
        ),
    )


def rollback(registry: Registry, *, by: str | None = None, store: Store | None = None) -> Promotion:
    """Give ``champion`` back to the ``previous`` version (and drop ``previous``: a second rollback has
    nothing to go back to, promote a version instead). Recorded in ``store``."""
    from fraudstream.storage.promotions import Promotion

    aliases = registry.aliases()
    back, current = aliases.get(PREVIOUS), aliases.get(CHAMPION)
    if back is None:
        raise RegistryConflictError(
            f"model {registry.name!r} has no previous champion to roll back to: promote a version instead "
            "(`fraudstream models promote VERSION`)"
        )
    author = by or default_author()
    registry.set_alias(CHAMPION, back)
    registry.delete_alias(PREVIOUS)
    if current is not None:
        registry.tag(current, {"fraudstream.rolled_back_at": datetime.now(UTC).isoformat(timespec="seconds")})
    registry.tag(back, _promotion_tags("rollback", current, author, None))
    return _record(store, Promotion(registry.name, "rollback", back, author, from_version=current))
