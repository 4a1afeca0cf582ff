"""Run the package's Alembic migrations from code: no ``alembic.ini``, no working-directory assumptions.

The migrations ship inside the package, so an installed ``fraudstream`` can bring any database it is
pointed at up to date on start-up.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine

from fraudstream.storage._vendors import vendor

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations, for ``upgrade`` and for tooling."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade(engine_or_url: Engine | Connection | str) -> None:
    """Bring the database to the newest schema; a no-op when it already is.

    Given a :class:`~sqlalchemy.Connection`, the migration runs inside the caller's transaction (which
    is how :meth:`Store.migrate` makes it atomic and exclusive on SQLite); given an engine or a URL, in
    a transaction of its own.
    """
    if isinstance(engine_or_url, Connection):
        _upgrade(engine_or_url)
        return
    engine = create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.begin() as conn:
            _upgrade(conn)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def _upgrade(conn: Connection) -> None:
    vendor(conn.dialect.name).lock_migrations(conn)  # processes starting at once migrate one by one
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def current_revision(engine: Engine | Connection) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated."""
    if isinstance(engine, Connection):
        return MigrationContext.configure(engine).get_current_revision()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
