"""Feature state backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlparse

from fraudstream._urls import split_prefix
from fraudstream.state.base import FeatureState, History, StateError
from fraudstream.state.memory import MemoryFeatureState


def open_state(url: str, *, retention: float, prefix: str = "fraudstream:state:") -> FeatureState:
    """Open the feature state at ``url``: ``memory://`` is in-process (the default), ``redis://host:port/db``
    is shared by every process, its keys under ``prefix`` (or the URL's ``?prefix=``)."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryFeatureState(retention=retention)
    if scheme in ("redis", "rediss"):
        from fraudstream.state.redis import RedisFeatureState

        plain, url_prefix = split_prefix(url)
        return RedisFeatureState(plain, retention=retention, prefix=url_prefix or prefix)
    raise StateError(f"unsupported feature state URL {url!r}: use memory:// or redis://host:port/db")


__all__ = ["FeatureState", "History", "MemoryFeatureState", "StateError", "open_state"]
