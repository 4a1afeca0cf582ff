"""``fraudstream dead-letters``: see what could not be decided, and send it back once it is fixed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, command_group, console, emit, errors, settings_with

app = command_group(
    "What could not be decided (invalid, unscoreable, or it kept killing workers), and sending it "
    "back to the workers once the cause is fixed."
)
MAX_ID = 2**63 - 1
"""Ids are 64-bit integers in both databases."""


@app.command("list")
def list_letters(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    before: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_ID, help="Only dead letters with a lower id (the next page)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest dead letters: id, when, source topic, transaction id and the reason."""
    from fraudstream.storage import open_store
    from fraudstream.worker.redrive import transaction_id_of

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            letters = store.dead_letters.list(limit, before=before)
    for letter in letters:
        letter["transaction_id"] = transaction_id_of(letter["payload"])
        letter["created_at"] = letter["created_at"].isoformat()
    table = Table("id", "when (UTC)", "source", "transaction", "reason")
    for letter in letters:
        when = letter["created_at"][:19].replace("T", " ")
        table.add_row(
            str(letter["id"]), when, letter["source"], letter["transaction_id"] or "-", letter["reason"]
        )
    if not letters and not as_json:
        console.print("no dead letters")
        return
    emit({"dead_letters": letters}, as_json, table)
    if len(letters) == limit and not as_json:
        console.print(f"more may follow: --before {letters[-1]['id']}")


@app.command()
def requeue(
    ids: Annotated[
        list[int] | None, typer.Argument(min=1, max=MAX_ID, help="Dead-letter ids, as `list` shows them.")
    ] = None,
    requeue_all: Annotated[bool, typer.Option("--all", help="Every dead letter, oldest first.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Publish dead letters back to the topic they came from (FRAUD_BROKER_URL) and remove them.

    Fix the cause first: one that fails again comes back with its new reason.

    Workers decide a requeued transaction exactly once.

    One that is still not a valid transaction stays, and is listed with the reason.

    Needs a broker that other processes share (database://, redis://, kafka://), not memory://.

    Exits 1 when dead letters were asked for and none could be requeued.
    """
    from fraudstream.runtime import settings_broker
    from fraudstream.storage import open_store
    from fraudstream.worker.redrive import requeue as send_back

    if bool(ids) == requeue_all:
        raise typer.BadParameter("give dead-letter ids, or --all", param_hint="IDS")
    with errors():
        settings = settings_with()
        scheme = urlparse(settings.broker_url).scheme
        if scheme == "memory":
            raise ValueError(
                "FRAUD_BROKER_URL is memory://, a queue inside one process that this command cannot reach: "
                "requeue through that process's API (POST /v1/dead-letters/requeue) instead"
            )
        with open_store(settings.db_url) as store:
            store.migrate()
            broker = settings_broker(settings, store)
            try:
                done = send_back(
                    store, broker, None if requeue_all else ids, partition_key=settings.partition_key
                )
            finally:
                broker.close()
    table = Table("id", "left because")
    for letter_id, reason in done.invalid.items():
        table.add_row(str(letter_id), reason)
    for letter_id in done.missing:
        table.add_row(str(letter_id), "no such dead letter (requeued already?)")
    emit(asdict(done), as_json, table if done.invalid or done.missing else None)
    if not as_json:
        console.print(
            f"requeued {len(done.requeued)} dead letter(s), {len(done.transaction_ids)} transaction(s), "
            f"to {scheme}://"
        )
    if not done.requeued and (done.invalid or done.missing):
        raise typer.Exit(1)
