"""PostgreSQL's side of :mod:`._dialect`: a server shared by processes, driven by psycopg 3."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    URL,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    cast,
    column,
    create_engine,
    func,
    text,
)
from sqlalchemy.dialects import postgresql

from fraudstream.storage._dialect import Dialect, JsonCodec
from fraudstream.storage.errors import StorageError

_CONNECT_TIMEOUT_S = 5
#: Serialises label writes on PostgreSQL (SQLite serialises writers through BEGIN IMMEDIATE): a change
#: of verdict reads the current one first, and two writers must not both read it.
_LABELS_LOCK = 0x6C61626C


class PostgreSQL(Dialect):
    """Claims skip rows another claim has locked; label writes take an advisory lock."""

    name = "postgresql"
    label = "PostgreSQL"
    version_query = "SHOW server_version"
    insert = staticmethod(postgresql.insert)

    def engine(self, url: URL, pool_size: int, max_overflow: int, json: JsonCodec) -> Engine:
        """A QueuePool of psycopg connections, each checked before use so a restarted server costs nothing."""
        try:
            return create_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
                pool_recycle=3600,
                json_serializer=json[0],
                json_deserializer=json[1],
                connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "fraudstream"},
            )
        except ImportError as exc:
            raise StorageError(
                "PostgreSQL support needs psycopg 3: pip install 'psycopg[binary]' (or use a sqlite:/// URL)"
            ) from exc

    def hint(self, reason: str, url: URL) -> str:
        if "password authentication failed" in reason or ("role" in reason and "does not exist" in reason):
            return "check the user name and password in the URL"
        if "database" in reason and "does not exist" in reason:
            return f"create it (createdb {url.database}) or fix the database name in the URL"
        return "is PostgreSQL running? `make services` (or check the host and port in the URL)"

    def lock_labels(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LABELS_LOCK})

    def claimable(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True)

    def json_texts(self, values: Any) -> Any:
        return func.json_array_elements_text(values).table_valued("value")

    def json_fields(self, values: Any, *names: str) -> tuple[Any, list[ColumnElement[Any]]]:
        element = func.json_array_elements(values).table_valued(column("value", JSON))
        return element, [element.c.value.op("->>")(name) for name in names]

    def time_and_score_bins(self, decided_at: Any, scaled: Any, bucket: int) -> tuple[Any, Any]:
        # A cast to integer rounds instead of flooring.
        seconds = func.extract("epoch", decided_at)
        return cast(func.floor(seconds / bucket), Integer), cast(func.floor(scaled), Integer)
