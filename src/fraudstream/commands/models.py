"""``fraudstream models``: the registered model's versions, and moving ``champion`` between them.

The registry is MLflow's (FRAUD_MLFLOW_TRACKING_URI); what serves is ``models:/NAME@champion``
(FRAUD_MODEL_URI). Every promotion and rollback is recorded in our database and tagged on the versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, command_group, console, emit, errors, out, settings_with

app = command_group(
    "The MLflow Model Registry: list versions, promote one to champion, roll back. Servers started "
    "with FRAUD_MODEL_URI=models:/fraudstream@champion swap the new champion in within "
    "FRAUD_MODEL_POLL_SECONDS, without a restart, when it reads the same feature set."
)

ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who is making the change, for the record (default: the OS user).")
]


GateOpt = Annotated[
    str | None,
    typer.Option(
        "--gate",
        metavar="CONDITIONS",
        help="METRIC>=MARGIN or METRIC>MARGIN on the challenger's lead, comma-separated, all must hold "
        "(default: FRAUD_PROMOTION_GATE, average_precision>=0,recall_at_1pct_fpr>0).",
    ),
]


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command("list")
def list_versions(
    history: Annotated[int, typer.Option(min=0, help="Also show this many recent promotions.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Every version of the registered model, newest first: aliases, bundle version, key metrics."""
    from fraudstream.registry import KEY_METRICS, registry_for
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        registry = registry_for(settings)
        versions = registry.versions()
        with open_store(settings.db_url) as store:
            store.migrate()
            promotions = store.promotions.list(registry.name, limit=history) if history else []
    table = Table(title=f"{registry.name} at {registry.tracking_uri}")
    for column in ("version", "aliases", "model", "registered (UTC)"):
        table.add_column(column)
    for key in KEY_METRICS:
        table.add_column(key.replace("_", " "), justify="right")
    for v in versions:
        when = v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "-"
        metrics = [_metric(v.metrics.get(key)) for key in KEY_METRICS]
        model = v.tags.get("fraudstream.model_version", "-")
        table.add_row(v.version, ", ".join(v.aliases) or "-", model, when, *metrics)
    payload = {
        "name": registry.name,
        "versions": [v.to_dict() for v in versions],
        "promotions": [p.to_dict() for p in promotions],
    }
    if not versions and not as_json:
        console.print(f"no versions of {registry.name!r} yet: `fraudstream train --register`")
        return
    emit(payload, as_json, table)
    if promotions and not as_json:
        for p in promotions:
            when = p.promoted_at.strftime("%Y-%m-%d %H:%M") if p.promoted_at else "-"
            move = f"{p.from_version or '-'} → {p.to_version}"
            out.print(f"{when}  {p.action:<8} {move}  by {p.promoted_by}")


def _comparison(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"--comparison: cannot read {path} as JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--comparison: {path} holds {type(value).__name__}, expected a JSON object")
    return value


def _judge(comparison: dict[str, Any], gate: str) -> Any:
    from fraudstream.models.gate import judge

    return judge(comparison, gate)


def _verdict(verdict: Any, as_json: bool, headline: str) -> None:
    """The gate's verdict: JSON on stdout, or one line per condition (failures on stderr)."""
    if as_json:
        emit(verdict.to_dict(), True)
        return
    for check in verdict.checks:
        (out if check.passed else console).print(
            check.describe(), markup=False, highlight=False, soft_wrap=True
        )
    (out if verdict.passed else console).print(headline, markup=False, highlight=False, soft_wrap=True)


def _same_challenger(registry: Any, comparison: dict[str, Any]) -> None:
    """Refuse when the registry's challenger is not the model the comparison measured (a newer one was
    registered since, say): the gate's verdict is about that model alone."""
    measured = (comparison.get("challenger") or {}).get("version")
    held = next((v for v in registry.versions(metrics=False) if "challenger" in v.aliases), None)
    if held is None or not measured:
        return  # promote says what is missing
    model = held.tags.get("fraudstream.model_version")
    if model and measured != model:
        raise ValueError(
            f"--if-better: the registry's challenger (version {held.version}, model {model}) is not the "
            f"model the comparison measured ({measured}); retrain again or promote a version by hand"
        )


def _report(done: Any, as_json: bool) -> None:
    payload = done.to_dict()
    if as_json:
        emit(payload, True)
        return
    out.print(
        f"{done.action}: {done.model_name} champion {done.from_version or '-'} → [bold]{done.to_version}[/] "
        f"by {done.promoted_by}; servers following the alias swap it in within FRAUD_MODEL_POLL_SECONDS"
    )


@app.command()
def promote(
    version: Annotated[str | None, typer.Argument(help="Version number to make champion.")] = None,
    challenger: Annotated[
        bool, typer.Option("--challenger", help="Promote the version aliased challenger.")
    ] = False,
    by: ByOpt = None,
    comparison: Annotated[
        Path | None,
        typer.Option(help="JSON file the decision rests on (`fraudstream retrain` writes comparison.json)."),
    ] = None,
    if_better: Annotated[
        Path | None,
        typer.Option(
            "--if-better",
            metavar="COMPARISON",
            help="Promote only when this comparison.json passes the gate (--gate); otherwise promote "
            "nothing and exit 1 naming the metrics that failed. The comparison and the verdict are recorded.",
        ),
    ] = None,
    gate: GateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the champion alias to VERSION (or the challenger); the old champion becomes previous.

    Recorded in the database (who, when, from which version, the comparison) and as tags on the versions.

    Servers started with FRAUD_MODEL_URI=models:/fraudstream@champion swap the new champion in within
    FRAUD_MODEL_POLL_SECONDS, between two batches (a model on another feature set needs a restart).

    Gated (for schedulers): fraudstream models promote --challenger --if-better out/comparison.json
    """
    from fraudstream.registry import promote as move
    from fraudstream.registry import registry_for
    from fraudstream.storage import open_store

    with errors():
        if (version is None) == (not challenger):
            raise ValueError("name a VERSION or pass --challenger (one of the two)")
        if version is not None and (not version.isdigit() or int(version) < 1):
            raise ValueError(f"VERSION: expected a version number such as 3, got {version!r}")
        if if_better is not None and comparison is not None and comparison != if_better:
            raise ValueError("--comparison and --if-better name different files; --if-better alone is enough")
        if if_better is None and gate is not None:
            raise ValueError("--gate: only used with --if-better")
        settings = settings_with()
        evidence = _comparison(if_better or comparison)
        if if_better is not None:
            assert evidence is not None
            verdict = _judge(evidence, gate or settings.promotion_gate)
            if not verdict.passed:
                _verdict(verdict, as_json, f"gate failed: nothing promoted ({if_better})")
                raise typer.Exit(1)
            evidence = {**evidence, "gate": verdict.to_dict()}
        registry = registry_for(settings)
        if evidence is not None and if_better is not None and challenger:
            _same_challenger(registry, evidence)
        with open_store(settings.db_url) as store:
            store.migrate()
            done = move(registry, version, by=by, comparison=evidence, store=store)
    _report(done, as_json)


@app.command("gate")
def gate_command(
    comparison: Annotated[
        Path, typer.Argument(help="comparison.json from `fraudstream retrain`.", show_default=False)
    ],
    gate: GateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Does the challenger in COMPARISON beat the champion by the gate? Exit 0 yes, 1 no (each failed
    metric and by how much), 2 when the file or the gate cannot be read; promotes nothing. Each condition
    is judged on the challenger's lead over the champion on the newest fully labelled window, e.g.
    average_precision>=0 (not worse) and recall_at_1pct_fpr>0 (recall at the FLAG rate, 1 % false
    positives, better).

    Example: fraudstream models gate fraudstream-data/retrain/20260301T020000Z/comparison.json
    """
    with errors():
        verdict = _judge(_comparison(comparison) or {}, gate or settings_with().promotion_gate)
    _verdict(verdict, as_json, "gate passed" if verdict.passed else "gate failed")
    if not verdict.passed:
        raise typer.Exit(1)


@app.command()
def rollback(by: ByOpt = None, as_json: JsonOpt = False) -> None:
    """Give the champion alias back to the previous champion (the one before the last promotion).

    One step only: a second rollback has nothing to go back to; promote a version instead.

    Servers following the champion alias swap the model back in within FRAUD_MODEL_POLL_SECONDS.
    """
    from fraudstream.registry import registry_for
    from fraudstream.registry import rollback as back
    from fraudstream.storage import open_store

    with errors():
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            done = back(registry_for(settings), by=by, store=store)
    _report(done, as_json)


@app.command("compare")
def compare_command(
    since: Annotated[
        str,
        typer.Option(help="Decisions made since: a duration back from now (7d, 12h) or an ISO 8601 time."),
    ] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Compare the serving model(s) with the challenger on labelled production decisions.

    Per model version (each that decided, and each challenger scored through FRAUD_CHALLENGER_URI, in
    shadow or for its FRAUD_CHALLENGER_SHARE of customers): how many decisions it made and scored in
    shadow, AUC, average precision, recall at the acting flag rate, fraud amount caught, false-positive
    rate; per deciding model and model scored beside it, how often their decisions agreed on the
    decisions both scored. Only decisions whose labels have arrived count.

    Example: fraudstream models compare --since 7d --json
    """
    from fraudstream.storage import open_store
    from fraudstream.training.shadow import compare, parse_since

    with errors():
        start = parse_since(since)
        settings = settings_with()
        with open_store(settings.db_url) as store:
            store.migrate()
            report = compare(store.comparison.labelled_decisions(start), start)
    table = Table(title=f"labelled decisions since {start:%Y-%m-%d %H:%M} UTC: {report['labelled']}")
    columns: tuple[str, ...] = ("version", "decided", "in_shadow", "labelled", "frauds", "auc")
    columns += ("average_precision", "recall_at_flag_rate")
    for column in (*columns, "caught_fraud_amount", "false_positive_rate"):
        table.add_column(column.replace("_", " "), justify="left" if column == "version" else "right")
    for m in report["models"]:
        cells = [str(m[c]) for c in columns[:5]] + [_metric(m[c]) for c in columns[5:]]
        table.add_row(*cells, f"{m['caught_fraud_amount']:.2f}", _metric(m["false_positive_rate"]))
    if not report["labelled"] and not as_json:
        console.print(f"no labelled decisions since {start.isoformat()}: labels arrive by POST /v1/labels")
        return
    emit(report, as_json, table)
    if not as_json:
        for pair in report["pairs"]:
            out.print(
                f"decided by {pair['decided_by']}, {pair['other']} beside it: {pair['labelled']} labelled "
                f"decisions scored by both, decisions agree on {pair['agreement']:.1%}"
            )
