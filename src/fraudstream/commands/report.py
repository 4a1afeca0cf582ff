"""``fraudstream report``: the daily report on the terminal (Markdown) or for machines (JSON, CSV)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from fraudstream.commands.common import errors, out
from fraudstream.config import Settings


class ReportFormat(StrEnum):
    markdown = "markdown"
    json = "json"
    csv = "csv"


def report(
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="The day (YYYY-MM-DD, UTC) by decision time: when the engine decided. Default: yesterday.",
        ),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="markdown (terminal), json or csv.")] = (
        ReportFormat.markdown
    ),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead.")] = None,
) -> None:
    """The daily report: decisions and amounts by decision, the rules and reasons that fired most,
    and caught fraud, missed fraud and false positives from the labels known so far.

    Days are UTC and decisions count on the day they were made (decision time, not event time).
    Run it from cron just after midnight UTC, e.g. `5 0 * * * fraudstream report` with MAILTO set.
    """
    from fraudstream.reports import ReportError, daily_report, parse_day, render
    from fraudstream.storage import open_store

    with errors():
        try:
            when = parse_day(day)
        except ReportError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--date "), param_hint="--date") from None
        settings = Settings()
        with open_store(settings.db_url) as store:
            store.migrate()
            result = daily_report(store, when)
        text = render(result, fmt.value)
        if output is not None:
            output.write_text(text)
        elif fmt is ReportFormat.markdown and out.is_terminal:
            from rich.markdown import Markdown

            out.print(Markdown(text))
        else:
            sys.stdout.write(text)
