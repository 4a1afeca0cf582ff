"""PostgreSQL's side of :mod:`._dialect`: a server shared by processes, driven by psycopg 3.

Its bulk writes go through psycopg: binary ``COPY`` for many rows, one multi-row ``INSERT`` for a few,
and ``= ANY(array)`` instead of ``IN`` lists. psycopg is imported only when a statement needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    URL,
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    cast,
    column,
    create_engine,
    func,
    text,
)
from sqlalchemy.dialects import postgresql

from fraudstream.storage._dialect import Dialect, JsonCodec, RowBuilder
from fraudstream.storage.errors import StorageError
from fraudstream.storage.tables import UTCDateTime

_CONNECT_TIMEOUT_S = 5
#: Serialises label writes on PostgreSQL (SQLite serialises writers through BEGIN IMMEDIATE): a change
#: of verdict reads the current one first, and two writers must not both read it.
_LABELS_LOCK = 0x6C61626C
_CASES_LOCK = 0x63617365
#: Serialises concurrent start-ups' migrations (SQLite serialises them through BEGIN IMMEDIATE).
_MIGRATIONS_LOCK = 0x66726175


def postgres_timestamp(value: datetime) -> datetime:
    """A datetime for a ``timestamptz`` column: naive input is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class PostgreSQL(Dialect):
    """Claims skip rows another claim has locked; label writes take an advisory lock."""

    name = "postgresql"
    label = "PostgreSQL"
    version_query = "SHOW server_version"
    insert = staticmethod(postgresql.insert)
    param = "%s"
    timestamp = staticmethod(postgres_timestamp)

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

    def lock_migrations(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATIONS_LOCK})

    def lock_labels(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LABELS_LOCK})

    def lock_cases(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CASES_LOCK})

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

    def greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})"

    def timestamps(self, seconds: np.ndarray) -> list[Any]:
        fromtimestamp = datetime.fromtimestamp
        return [fromtimestamp(t, UTC) for t in np.asarray(seconds, dtype=np.float64).tolist()]

    def insert_new(
        self,
        driver: Any,
        table: Table,
        columns: Sequence[str],
        keys: Sequence[Any],
        build: RowBuilder,
        *,
        expect_new: bool,
    ) -> set[Any]:
        from psycopg.errors import UniqueViolation

        # Rows go in key order: two writers with overlapping keys then wait for each other at their
        # first shared key instead of each holding a key the other needs next (a deadlock).
        order = sorted(range(len(keys)), key=keys.__getitem__)
        with driver.cursor() as cursor:
            # Skip the keys already stored (unless expected new), then COPY the rest
            # straight into the table. A stored key left in, or one a concurrent writer commits
            # meanwhile, makes COPY fail on the unique key, and the batch goes the slower way: a staging
            # table, ON CONFLICT DO NOTHING.
            stored: set[Any] = set()
            if not expect_new:
                known = f"SELECT {columns[0]} FROM {table.name} WHERE {columns[0]} = ANY(%b)"
                cursor.execute(known, [list(keys)])
                stored = {k for (k,) in cursor.fetchall()}
            at = [i for i in order if keys[i] not in stored]
            if not at:
                return set()
            rows = iter(build(at))
            written: list[tuple[Any, ...]] = []
            cursor.execute("SAVEPOINT fraudstream_copy")
            try:
                _copy(cursor, table.name, table, columns, rows, keep=written)
            except UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT fraudstream_copy")
                return _insert_staged(cursor, table, columns, [*written, *rows])
            cursor.execute("RELEASE SAVEPOINT fraudstream_copy")
            return {keys[i] for i in at}

    def append(
        self, driver: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        with driver.cursor() as cursor:
            _copy(cursor, table.name, table, columns, rows)

    def set_column(self, driver: Any, table: Table, column: str, value: Any, keys: Sequence[Any]) -> int:
        key = table.primary_key.columns.values()[0].name
        with driver.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table.name} SET {column} = %s "
                f"WHERE {column} IS DISTINCT FROM %s AND {key} = ANY(%b)",
                (value, value, list(keys)),
            )
            return int(cursor.rowcount)

    def stored_values(
        self, driver: Any, table: Table, columns: Sequence[str], keys: Sequence[Any]
    ) -> dict[Any, tuple[Any, ...]]:
        key = table.primary_key.columns.values()[0].name
        names = ", ".join((key, *columns))
        with driver.cursor() as cursor:
            cursor.execute(f"SELECT {names} FROM {table.name} WHERE {key} = ANY(%s)", (list(keys),))
            return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def _copy_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, JSON | String):
        return "text"  # json's binary COPY format is its text
    raise TypeError(f"no COPY type for {table.name}.{column} ({kind!r})")


def _copy(
    cursor: Any,
    target: str,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    keep: list[tuple[Any, ...]] | None = None,
) -> None:
    """Binary COPY of ``rows``, appended to ``keep`` as they go. psycopg sends every 32 kB or so, so
    the server ingests the first rows while a lazy ``rows`` is still building the next ones.

    ``bytea`` values go through psycopg's compiled bytes dumper: the one its DB-API module registers
    for the type (to accept ``Binary`` wrappers too) is Python, a call per feature vector."""
    from psycopg.types.string import BytesBinaryDumper

    cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
    with cursor.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([_copy_type(table, c) for c in columns])
        for row in rows:
            if keep is not None:
                keep.append(row)
            copy.write_row(row)


def _insert_staged(
    cursor: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> set[Any]:
    """COPY into a session-local staging table (COPY itself cannot skip conflicts), then insert from it."""
    stage, names = f"fraudstream_stage_{table.name}", ", ".join(columns)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS")
    _copy(cursor, stage, table, columns, rows)
    cursor.execute(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage} ORDER BY {columns[0]} "
        f"ON CONFLICT DO NOTHING RETURNING {columns[0]}"
    )
    inserted = {k for (k,) in cursor.fetchall()}
    cursor.execute(f"TRUNCATE {stage}")
    return inserted
