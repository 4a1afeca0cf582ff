"""Feature state backends, chosen by URL."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from fraudstream._urls import split_prefix
from fraudstream.state.base import DEFAULT_SCHEMA, EventSchema, FeatureState, History, StateError
from fraudstream.state.memory import MemoryFeatureState

STATE_PREFIX = "fraudstream:state:"
"""Where a Redis state's keys go when its URL names no ``?prefix=``."""


def open_state(
    url: str,
    *,
    retention: float,
    prefix: str = STATE_PREFIX,
    schema: EventSchema = DEFAULT_SCHEMA,
    rebuild: Callable[[FeatureState], int] | None = None,
) -> FeatureState:
    """Open the feature state at ``url``, holding the ``schema``'s columns per event: ``memory://`` is
    in-process (the default), ``redis://host:port/db`` is shared by every process, its keys under
    ``prefix`` (or the URL's ``?prefix=``). ``rebuild`` fills a Redis state from storage whenever it is
    found absent (see :class:`~fraudstream.state.redis.RedisFeatureState`); an in-process state starts
    empty, and its caller warms it."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryFeatureState(retention=retention, schema=schema)
    if scheme in ("redis", "rediss"):
        from fraudstream.state.redis import RedisFeatureState

        plain, url_prefix = split_prefix(url)
        return RedisFeatureState(
            plain, retention=retention, prefix=url_prefix or prefix, schema=schema, rebuild=rebuild
        )
    raise StateError(f"unsupported feature state URL {url!r}: use memory:// or redis://host:port/db")


__all__ = [
    "STATE_PREFIX",
    "EventSchema",
    "FeatureState",
    "History",
    "MemoryFeatureState",
    "StateError",
    "open_state",
]
