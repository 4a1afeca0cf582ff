"""``fraudstream parity``: the feature vectors decisions were made on against the offline engine's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, console, date_option, emit, errors, progress, utc
from fraudstream.config import Settings

if TYPE_CHECKING:
    from fraudstream.training.parity import Parity


def parity_table(result: Parity, top: int) -> Table:
    """Per feature group, then the features that differ most."""
    table = Table(
        title=f"{result.differing:,} of {result.compared:,} decisions differ from the offline features "
        f"({result.share:.3%})"
    )
    table.add_column("group or feature")
    table.add_column("decisions differing", justify="right")
    for group, count in result.groups.items():
        table.add_row(f"[bold]{group}[/]", f"{count:,}")
    for name, count in list(result.features.items())[:top]:
        table.add_row(f"  {name}", f"{count:,}")
    if len(result.features) > top:
        table.caption = f"{len(result.features) - top} more features differ (--top to show them)"
    return table


def parity(
    since: Annotated[
        str,
        typer.Option(
            metavar="<duration>",
            help="The period, back from --until, by transaction time: e.g. 1d, 36h, 2w.",
        ),
    ] = "1d",
    until: Annotated[
        datetime | None,
        date_option("End of the period (default: just after the newest decided transaction)"),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="The bundle whose feature spec to compute (default: the served one: FRAUD_MODEL_URI, "
            "a registry alias or a path, else FRAUD_MODEL_PATH)."
        ),
    ] = None,
    max_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit with 3 when more than this share of the checked decisions differ (e.g. 0.001).",
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(help="Store the result in the database, for every API process to report on /metrics."),
    ] = True,
    top: Annotated[int, typer.Option(min=1, help="Features shown in the table, most differing first.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Online/offline feature parity: the feature vector stored with each decision on the period's
    transactions against the same features computed again offline, point in time, from the stored
    transactions and labels.

    A decision whose vector differs was made on another history than storage holds: events the live
    state missed or saw late (a redelivery decided after later messages, a state lost and rebuilt), or
    a key's events split across workers. Counts are per feature group (the key it aggregates over, or
    row) and per feature. The result is stored (unless --no-record) and every API process reports the
    newest on /metrics (fraudstream_feature_parity_*): run it on a schedule. Exits with 1 when no
    decision could be checked (none in the period, logged under another spec, or stored without its
    transaction by `fraudstream replay`), 3 past --max-share.

    Example: fraudstream parity --since 1d --max-share 0.001 --json
    """
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.models.bundle import load_bundle
    from fraudstream.storage import open_store
    from fraudstream.storage.parity import ParityCheck
    from fraudstream.training.parity import check_parity
    from fraudstream.training.retrain import duration

    with errors():
        try:
            period = duration(since)
        except ValueError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
        refresh_stale_kernels()
        settings = Settings()
        if model is None:  # the served bundle: a registry alias is resolved (and cached) as serve does
            from fraudstream.registry import load_model

            model = load_model(settings)[1].path
        bundle = load_bundle(model)
        feature_set = bundle.feature_set()
        with open_store(settings.db_url) as store:
            store.migrate()
            span = store.history.span()
            end = utc(until) or (span.last + timedelta(microseconds=1) if span else datetime.now(UTC))
            with progress() as bar:
                result = check_parity(store.history, feature_set, end - period, end, bar)
            if record and result.compared:
                checked = ParityCheck(
                    datetime.now(UTC), result.start, result.end, bundle.manifest.version,
                    result.compared, result.differing, result.groups,
                )  # fmt: skip
                store.parity.add(checked)
        console.print(
            f"decisions on transactions from {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} "
            f"UTC: {result.decisions:,}, checked {result.compared:,} against {model}"
        )
        skipped = [
            f"{result.other_features:,} logged with other features" if result.other_features else "",
            f"{result.not_stored:,} without their stored transaction" if result.not_stored else "",
        ]
        if any(skipped):
            console.print("not checked: " + "; ".join(s for s in skipped if s))
        emit(result.to_dict(), as_json, parity_table(result, top) if result.compared else None)
        if not result.compared:
            raise typer.Exit(1)
        if max_share is not None and result.share > max_share:
            raise typer.Exit(3)
