"""Feature state in Redis, chosen by ``redis://host:port/db``: :class:`RedisFeatureState`, the Lua
scripts it runs and how it encodes events."""

from fraudstream.state.redis.state import RedisFeatureState

__all__ = ["RedisFeatureState"]
