"""``fraudstream archive``: copy decisions, transactions and labels from the database to the object-store
archive (FRAUD_ARCHIVE_URL) as date-partitioned Parquet, and say how far it has got.

Archiving is a job of its own, not a task of the workers or the API: it reads the store in large batches
and writes objects, work the scoring path should not wait behind, and one archiver at a time does it
(several take turns, harmlessly). Run ``archive run`` from cron, or ``archive run --follow`` as a service.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, command_group, console, emit, errors, out, settings_with

app = command_group(
    "The object-store archive (FRAUD_ARCHIVE_URL: s3://bucket/prefix or a folder): copy decisions, "
    "transactions and labels from the database as date-partitioned Parquet, each exactly once "
    "(run), or show how far that has got (status). `fraudstream train --data URL` reads it back."
)

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="<s3://bucket/prefix|folder>",
        help="The archive (default: FRAUD_ARCHIVE_URL). S3 options go in the query, e.g. "
        "?endpoint_override=127.0.0.1:9010&scheme=http; credentials in AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY.",
    ),
]


def _url(url: str | None, configured: str | None) -> str:
    from fraudstream.archive.location import check_url

    chosen = url if url is not None else configured
    if not chosen:
        raise typer.BadParameter(
            "no archive: set FRAUD_ARCHIVE_URL (s3://bucket/prefix or a folder) or pass --url",
            param_hint="--url",
        )
    try:
        return check_url(chosen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None


@app.command()
def run(
    url: UrlOpt = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep going: a pass every --interval seconds until stopped (SIGTERM or Ctrl-C end it "
            "after the batch being written); a pass that fails (store or database unreachable) is "
            "reported and tried again.",
        ),
    ] = False,
    batch_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=5_000_000,
            help="Most decisions (or labels) a batch (default: FRAUD_ARCHIVE_BATCH_ROWS).",
        ),
    ] = None,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=86_400,
            help="Leave rows stored less than this long ago for a later pass (default: "
            "FRAUD_ARCHIVE_SETTLE_SECONDS); longer than any delay between stamping a row and committing it.",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=86_400,
            help="With --follow: seconds between passes (default: FRAUD_ARCHIVE_INTERVAL_SECONDS).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the decisions, transactions and labels not yet archived to the archive, once or --follow.

    Decisions (with reasons, rules, model and rules versions) and their transactions' bodies go
    under the transaction's event date, labels under the date they were stored. Every transaction
    is archived exactly once, also after a run killed mid-batch: the next run writes that batch
    again under the same object names. Rows stored less than --settle-seconds ago wait.

    Example: FRAUD_ARCHIVE_URL=s3://fraud-archive/prod fraudstream archive run --follow
    """
    from fraudstream.archive.location import open_location
    from fraudstream.archive.writer import Archiver, PassResult
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        target = _url(url, settings.archive_url)
        location = open_location(target, create=True)
        settle = timedelta(
            seconds=settings.archive_settle_seconds if settle_seconds is None else settle_seconds
        )
        with open_store(settings.db_url) as store:
            store.migrate()
            archiver = Archiver(
                store, location, batch_rows=batch_rows or settings.archive_batch_rows, settle=settle
            )
            if not follow:
                result = archiver.run()
                if as_json:
                    emit(result.as_dict() | {"url": location.url}, True)
                else:
                    out.print(_summary(result, location.url), markup=False, highlight=False)
                return
            stopping = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.set())

            def report(result: PassResult) -> None:
                if result.batches:
                    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    console.print(f"{stamp} {_summary(result, location.url)}")

            console.print(
                f"archiving to {location.url} every {interval or settings.archive_interval_seconds:g}s"
            )

            def failed(exc: Exception) -> None:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                console.print(f"{stamp} [bold red]error:[/] {exc} (trying again at the next pass)")

            archiver.follow(
                interval or settings.archive_interval_seconds, stop=stopping.is_set, report=report,
                failed=failed,
            )  # fmt: skip


def _summary(result: Any, url: str) -> str:
    rows = result.rows
    return (
        f"archived {rows['decisions']:,} decisions, {rows['transactions']:,} transactions and "
        f"{rows['labels']:,} labels in {result.batches} batches ({result.objects} objects) to {url}"
    )


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show how far each stream (decisions, labels) is archived, and any batch being written.

    For each stream: the next batch number, the key (time and id) of the last row archived, and a
    batch being written, or left by a crash (the next run writes it again).

    Example: fraudstream archive status --json
    """
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            marks = store.archive.watermarks()
    payload = {
        "url": settings.archive_url,
        "streams": [
            {
                "stream": m.stream,
                "next_batch": m.batch,
                "archived_through": None
                if m.done is None
                else {"at": m.done.at.isoformat(), "id": m.done.id},
                "pending_through": None
                if m.pending is None
                else {"at": m.pending.at.isoformat(), "id": m.pending.id},
                "updated_at": m.updated_at.isoformat(),
            }
            for m in marks
        ],
    }
    table = Table(title=f"archive {settings.archive_url or '(FRAUD_ARCHIVE_URL not set)'}")
    for column in ("stream", "next batch", "archived through", "being written"):
        table.add_column(column)
    for m in marks:
        table.add_row(
            m.stream, str(m.batch),
            "-" if m.done is None else f"{m.done.at:%Y-%m-%d %H:%M:%S} {m.done.id}",
            "-" if m.pending is None else f"{m.pending.at:%Y-%m-%d %H:%M:%S} {m.pending.id}",
        )  # fmt: skip
    if not marks:
        table.caption = "nothing archived yet: fraudstream archive run"
    emit(payload, as_json, table)
