"""Feature state backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlparse, urlsplit, urlunsplit

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

        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        prefix = next((v for k, v in query if k == "prefix"), prefix)
        plain = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
        return RedisFeatureState(plain, retention=retention, prefix=prefix)
    raise StateError(f"unsupported feature state URL {url!r}: use memory:// or redis://host:port/db")


__all__ = ["FeatureState", "History", "MemoryFeatureState", "StateError", "open_state"]
