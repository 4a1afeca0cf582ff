"""``fraudstream keys``: named API keys with a role, stored hashed in the database (FRAUD_DATABASE_URL).

The token is printed once, by ``create``; the database keeps only its SHA-256, so a lost token cannot
be shown again: revoke the key and create another. Running servers see a new or revoked key within
FRAUD_KEY_CACHE_SECONDS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, command_group, console, emit, errors, out, settings_with

app = command_group(
    "Named API keys with a role (ingest, analyst, admin), stored hashed in the database: create "
    "one (its token is printed once), list them, revoke one. Running servers follow within "
    "FRAUD_KEY_CACHE_SECONDS."
)

NameArg = Annotated[
    str, typer.Argument(help="The key's name (1-64 letters, digits or ._@-), recorded as who acted.")
]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _payload(key: Any) -> dict[str, Any]:
    """A key as JSON: times in ISO 8601 UTC, ``null`` when not (yet) so."""
    return {
        "name": key.name,
        "role": key.role.value,
        "created_at": _iso(key.created_at),
        "revoked_at": _iso(key.revoked_at),
        "last_used_at": _iso(key.last_used_at),
    }


@app.command()
def create(
    name: NameArg,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            metavar="ingest|analyst|admin",
            help="ingest: send transactions and read their decisions; analyst: read everything, write "
            "labels and cases; admin: everything, models and keys included.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Create the key NAME with a role and print its token, once: the database keeps only its hash.

    Send the token as `X-API-Key: <token>` or `Authorization: Bearer <token>`.

    Example: fraudstream keys create feeder --role ingest
    """
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            key, token = store.keys.create(name, role)
    if as_json:
        emit(_payload(key) | {"token": token}, True)
        return
    out.print(token, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"created {key.name!r} ({key.role.value}); the token above is shown this once, store it now",
        markup=False,
        highlight=False,
    )


@app.command("list")
def list_keys(
    active: Annotated[bool, typer.Option("--active", help="Leave out the revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The stored keys by name: role, created, last used, revoked. Never their tokens, which are not kept."""
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            keys = store.keys.list(revoked=not active)
    if not keys and not as_json:
        console.print("no stored keys: `fraudstream keys create NAME --role analyst`")
        return
    table = Table(title="API keys (times in UTC)")
    for column in ("name", "role", "created", "last used", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.name, key.role.value, _when(key.created_at), _when(key.last_used_at), _when(key.revoked_at)
        )
    emit({"keys": [_payload(key) for key in keys]}, as_json, table)


@app.command()
def revoke(name: NameArg, as_json: JsonOpt = False) -> None:
    """Revoke the key NAME: running servers refuse it within FRAUD_KEY_CACHE_SECONDS.

    Its name stays taken, so the records naming it stay unambiguous."""
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            key = store.keys.revoke(name)
    if as_json:
        emit(_payload(key), True)
        return
    out.print(
        f"revoked {key.name!r} ({key.role.value}) at {_when(key.revoked_at)} UTC; running servers refuse it "
        "within FRAUD_KEY_CACHE_SECONDS",
        markup=False,
        highlight=False,
    )
