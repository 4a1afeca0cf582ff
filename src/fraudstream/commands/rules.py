"""``fraudstream rules``: try candidate rules on stored history before they touch a customer, and read the
versions kept in the database.

``backtest`` applies a rules file to the decisions stored in FRAUD_DATABASE_URL, reading the feature
vectors logged at decision time (the file's own aggregates are computed over the stored transactions),
and reports per rule its hits, precision and recall against the labels known now and the fraud amount
caught, and the decisions that would change.
``export`` writes a saved version as YAML; ``versions`` lists them.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import (
    JsonOpt,
    command_group,
    console,
    date_option,
    emit,
    errors,
    settings_with,
    utc,
)

app = command_group(
    "Analysts' rules: backtest a candidate rules file over the stored decisions and labels; export "
    "and list the versions kept in the database (FRAUD_RULES_SOURCE=database)."
)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _tables(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"rules backtest: {report['rows']} decisions, {report['fraud']} known fraud "
        f"({report['fraud_amount']:,.2f})\n{report['start'][:16]} to {report['end'][:16]} UTC",
        caption="fraud: hits labelled fraud; unlab.: hits not labelled yet; prec.: fraud / hits "
        "(unlabelled count as not fraud); recall: of all known fraud; caught: the fraud hits' amount",
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("action", no_wrap=True)
    for column in ("hits", "fraud", "unlab.", "prec.", "recall", "caught"):
        table.add_column(column, justify="right", no_wrap=True)
    for rule in report["rules"]:
        table.add_row(
            rule["name"], rule["action"], str(rule["hits"]), str(rule["fraud_hits"]),
            str(rule["unlabelled_hits"]), _share(rule["precision"]), _share(rule["recall"]),
            f"{rule['fraud_amount']:,.0f}",
        )  # fmt: skip
    return table


def _changes(report: dict[str, Any]) -> Table:
    table = Table(title="decisions that would change (live → candidate)")
    for column in ("from", "to", "count", "examples"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for change in report["changes"]:
        table.add_row(change["from"], change["to"], str(change["count"]), ", ".join(change["examples"]))
    return table


@app.command()
def backtest(
    candidate: Annotated[
        Path,
        typer.Argument(help="The candidate rules file (YAML, the format of FRAUD_RULES_PATH)."),
    ],
    since: Annotated[
        str, typer.Option(help="How far back from --until: e.g. 30d, 12h, 2w.", show_default=True)
    ] = "30d",
    until: Annotated[
        datetime | None,
        date_option("End of the history, exclusive; default just after the newest stored decision"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Try CANDIDATE rules on the stored decisions of the last --since, before they touch a customer.

    The rules are applied to the transactions and the feature vectors logged at decision time; the
    aggregates the file declares (aggregates:) are computed over the stored transactions and labels by
    the engine that computes them live. Reported per rule: hits, precision and recall against the
    labels known now (fraud when any source says so), fraud amount caught; and the decisions that
    would change against those made live.

    The model's decision under the rules is rebuilt from each stored probability and the thresholds of
    the serving model (FRAUD_MODEL_URI, else FRAUD_MODEL_PATH); rows another version decided are counted.

    Example: fraudstream rules backtest candidate.yaml --since 30d
    """
    from fraudstream.registry import load_model
    from fraudstream.rules.loader import load_rules
    from fraudstream.storage import open_store
    from fraudstream.training.retrain import duration
    from fraudstream.training.rule_backtest import MAX_SINCE, backtest_names, run_backtest

    try:
        window = duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
    except OverflowError:
        window = MAX_SINCE * 2  # far too long: refused just below
    if window > MAX_SINCE:
        raise typer.BadParameter(f"at most {MAX_SINCE.days} days", param_hint="--since")
    with errors():
        settings = settings_with()
        bundle, _ = load_model(settings)
        with open_store(settings.db_url) as store:
            store.migrate()
            known = backtest_names(store.history.feature_names(), bundle.feature_set())
            rules = load_rules(candidate, known)
            report = run_backtest(
                store, rules, bundle.manifest.thresholds, bundle.manifest.version, window, utc(until)
            ).to_dict()
    if as_json:
        emit(report, True)
        return
    emit(report, False, _tables(report))
    if report["changes"]:
        emit(report, False, _changes(report))
    else:
        console.print("no decision would change")
    if report["other_model_rows"]:
        console.print(
            f"{report['other_model_rows']} decisions were made by another model version than "
            f"{report['thresholds_version']}: their model decisions were rebuilt with its thresholds"
        )


@app.command()
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of standard output.")
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="This saved version instead of the newest (the one in use).")
    ] = None,
) -> None:
    """Write a saved rules version as YAML: the newest (in use) unless --version N.

    The text is written as it was saved: a file to edit, review, keep in version control, or use as
    FRAUD_RULES_PATH.

    Versions are kept in the database (FRAUD_DATABASE_URL) when servers run with
    FRAUD_RULES_SOURCE=database; they are saved with PUT /v1/rules.

    Example: fraudstream rules export -o rules.yaml
    """
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            stored = store.rules.get(version)
        if stored is None:
            which = f"version {version}" if version else "rules version"
            raise ValueError(
                f"no {which} is stored in {settings.db_url}: servers with FRAUD_RULES_SOURCE=database store "
                "the first one from FRAUD_RULES_PATH when they start; PUT /v1/rules saves more"
            )
        if output is None:
            sys.stdout.write(stored.text if stored.text.endswith("\n") else stored.text + "\n")
        else:
            output.write_text(stored.text, encoding="utf-8")
            console.print(
                f"rules version {stored.version} written to {output}", markup=False, highlight=False
            )


@app.command()
def versions(
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest versions.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List the saved rules versions, newest first (the newest is in use): when, and by which key.

    Example: fraudstream rules versions --limit 5
    """
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            saved = store.rules.versions(limit)
    rows = [
        {"version": v.version, "created_at": v.created_at.isoformat(), "created_by": v.created_by}
        for v in saved
    ]
    if not rows and not as_json:
        console.print("no rules versions are stored (servers use FRAUD_RULES_PATH: FRAUD_RULES_SOURCE=file)")
        return
    table = Table(title="rules versions (times in UTC)")
    for column in ("version", "saved", "by"):
        table.add_column(column)
    for v in saved:
        table.add_row(str(v.version), f"{v.created_at:%Y-%m-%d %H:%M:%S}", v.created_by)
    emit({"versions": rows}, as_json, table)
