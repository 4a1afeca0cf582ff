"""``fraudstream rules``: try candidate rules on stored history before they touch a customer, and read the
versions kept in the database.

``backtest`` applies a rules file to the decisions stored in FRAUD_DATABASE_URL, reading the feature
vectors logged at decision time (the file's own aggregates are computed over the stored transactions),
and reports per rule its hits, precision and recall against the labels known now and the fraud amount
caught, and the decisions that would change.
``export`` writes a saved version as YAML; ``versions`` lists them. ``guard`` shows the rule guard's view
of the rules in use, ``reenable`` lets a rule it moved to shadow act again, and ``baseline`` backtests the
version in use for it.
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
    "and list the versions kept in the database (FRAUD_RULES_SOURCE=database); the rule guard: show "
    "it, re-enable a rule it moved to shadow, backtest the version in use for it."
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
            bands = settings.score_bands()
            report = run_backtest(
                store, rules, bundle.manifest.thresholds, bundle.manifest.version, window, utc(until), bands
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


ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who is acting, for the audit log (default: the OS user)."),
]


def _in_use(settings: Any, store: Any, feature_set: Any) -> Any:
    """The rules version servers with these settings use now, compiled as they compile it (its version:
    the number saved in the database, or the file's short hash), without the guard's changes."""
    from fraudstream.rules.loader import load_rules
    from fraudstream.rules.names import default_known_names
    from fraudstream.rules.packaged import packaged_rules_path
    from fraudstream.rules.reload import compile_version

    known = default_known_names(feature_set)
    skip_unknown = settings.rules_path is None
    if settings.rules_source == "database":
        stored = store.rules.get()
        if stored is None:
            raise ValueError(
                f"no rules version is stored in {settings.db_url}: servers with FRAUD_RULES_SOURCE=database "
                "store the first one when they start"
            )
        return compile_version(stored, known, skip_unknown=skip_unknown)
    path = settings.rules_path or packaged_rules_path(feature_set)
    return load_rules(path, known, skip_unknown=skip_unknown)


def _guard_table(status: dict[str, Any]) -> Table:
    table = Table(
        title=f"rule guard: rules version {status['rules_version']}, {status['decisions']:,} of the newest "
        f"{status['window']:,} stored decisions made under it",
        caption=f"a rule trips with at least {status['min_hits']} hits at {status['multiple']:g}x its "
        f"backtested rate or more{'' if status['enabled'] else ' (FRAUD_RULE_GUARD=false: it trips none)'}",
    )
    for column in ("rule", "action", "state", "hits", "rate", "expected", "why"):
        table.add_column(column, justify="right" if column in ("hits", "rate", "expected") else "left")
    for rule in status["rules"]:
        table.add_row(
            rule["name"], rule["action"], rule["state"], f"{rule['hits']:,}/{rule['decisions']:,}",
            _share(rule["rate"]), _share(rule["expected_rate"]), rule["says"],
        )  # fmt: skip
    return table


def _status(settings: Any, store: Any, rules: Any) -> dict[str, Any]:
    """The guard's view of ``rules`` now, as ``GET /v1/rules/guard`` answers it."""
    from fraudstream.api.schemas import GuardStatusOut
    from fraudstream.monitoring.rule_guard import guard_limits, guard_status

    status = guard_status(store.rule_guard, rules, guard_limits(settings))
    return GuardStatusOut.of(status, settings).model_dump(mode="json")


@app.command()
def guard(as_json: JsonOpt = False) -> None:
    """Show the rule guard: each rule of the version in use, its hits among the newest stored decisions
    against its backtested rate, and its state (guarded, tripped, watched, no_baseline, shadow, exempt).

    Running servers and workers move a rule to shadow when it has at least FRAUD_RULE_GUARD_MIN_HITS
    hits among the newest FRAUD_RULE_GUARD_WINDOW decisions, at FRAUD_RULE_GUARD_MULTIPLE times its
    backtested rate or more; `fraudstream rules reenable RULE` lets it act again.

    The rules in use are read as servers with these settings read them (FRAUD_RULES_SOURCE), compiled
    for the serving model (FRAUD_MODEL_URI, else FRAUD_MODEL_PATH).

    Example: fraudstream rules guard
    """
    from fraudstream.registry import load_model
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        bundle, _ = load_model(settings)
        with open_store(settings.db_url) as store:
            store.migrate()
            status = _status(settings, store, _in_use(settings, store, bundle.feature_set()))
    if as_json:
        emit(status, True)
        return
    emit(status, False, _guard_table(status))
    for g in status["in_force"]:
        console.print(
            f"{g['rule']}: in shadow since {g['tripped_at'][:19]} UTC ({g['hits']:,} hits in "
            f"{g['decisions']:,} decisions, rules version {g['rules_version']})",
            markup=False,
            highlight=False,
        )


@app.command()
def reenable(
    rule: Annotated[str, typer.Argument(help="The rule the guard moved to shadow.")],
    reason: Annotated[str, typer.Option(help="Why it may act again: kept with the guard and audited.")],
    by: ByOpt = None,
) -> None:
    """Let a rule the rule guard moved to shadow act again: running servers and workers use it within
    FRAUD_RULES_POLL_SECONDS, and its hits are counted afresh from now. Audited (GET
    /v1/audit?subject=rule:RULE). Exit code 2 when the rule is not guarded.

    Example: fraudstream rules reenable big_amount --reason "the feed's amounts were in cents; fixed"
    """
    from fraudstream.registry import default_author
    from fraudstream.storage import open_store
    from fraudstream.storage.guard import GuardError

    if not reason.strip():
        raise typer.BadParameter("say why the rule may act again", param_hint="--reason")
    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            try:
                released = store.rule_guard.reenable(rule, by or default_author(), reason)
            except GuardError as exc:
                raise ValueError(str(exc)) from None
    console.print(
        f"rule {released.rule} re-enabled by {released.released_by} (it was in shadow since "
        f"{released.tripped_at:%Y-%m-%d %H:%M:%S} UTC)",
        markup=False,
        highlight=False,
    )


@app.command()
def baseline(by: ByOpt = None, as_json: JsonOpt = False) -> None:
    """Backtest the rules version in use over the newest FRAUD_RULE_GUARD_BASELINE_DECISIONS stored
    decisions and make each rule's hits there its expected rate, for the rule guard (replacing the
    version's baseline). PUT /v1/rules does this for each version it saves; use this for a version
    seeded from a file, for rules read from FRAUD_RULES_PATH (after each edit), or once the history
    has grown.

    Example: fraudstream rules baseline
    """
    from fraudstream.registry import default_author, load_model
    from fraudstream.storage import open_store
    from fraudstream.training.rule_baseline import backtest_baseline

    with errors():
        settings = settings_with()
        bundle, _ = load_model(settings)
        with open_store(settings.db_url) as store:
            store.migrate()
            rules = _in_use(settings, store, bundle.feature_set())
            backtest_baseline(
                store, rules, bundle.manifest.thresholds, bundle.manifest.version,
                decisions=settings.rule_guard_baseline_decisions, by=by or default_author(),
            )  # fmt: skip
            status = _status(settings, store, rules)
    emit(status, as_json, _guard_table(status))
