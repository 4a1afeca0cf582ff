"""Feature state backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlparse

from fraudstream.state.base import FeatureState, History, StateError
from fraudstream.state.memory import MemoryFeatureState


def open_state(url: str, *, retention: float) -> FeatureState:
    """Open the feature state at ``url``: ``memory://`` is in-process (the default)."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryFeatureState(retention=retention)
    raise StateError(f"unsupported feature state URL {url!r}: use memory://")


__all__ = ["FeatureState", "History", "MemoryFeatureState", "StateError", "open_state"]
