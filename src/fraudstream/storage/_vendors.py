"""The :class:`~._dialect.Dialect` of each database the store supports, for code given only its name
(:attr:`.database.Database.dialect`, SQLAlchemy's ``conn.dialect.name``)."""

from __future__ import annotations

from fraudstream.storage._dialect import Dialect
from fraudstream.storage._postgres import PostgreSQL
from fraudstream.storage._sqlite import SQLite

SQLITE = SQLite()
POSTGRESQL = PostgreSQL()
_BY_NAME: dict[str, Dialect] = {SQLITE.name: SQLITE, POSTGRESQL.name: POSTGRESQL}


def vendor(name: str) -> Dialect:
    """The dialect called ``name``: ``"sqlite"`` or ``"postgresql"``."""
    return _BY_NAME[name]
