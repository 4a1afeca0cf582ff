"""``fraudstream retrain``: a challenger trained on production history, compared with the champion."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import (
    BlockFprOpt,
    FlagFprOpt,
    FoldsOpt,
    JsonOpt,
    ModelsOpt,
    ThreadsOpt,
    TrialsOpt,
    console,
    date_option,
    emit,
    errors,
    progress,
    utc,
)
from fraudstream.config import Settings


def retrain(
    since: Annotated[
        str,
        typer.Option(
            metavar="<duration>",
            help="How much history to read, back from --until: e.g. 60d, 12w, 36h.",
        ),
    ] = "60d",
    until: Annotated[
        datetime | None,
        date_option("End of the history (default: just after the newest decided transaction)"),
    ] = None,
    champion: Annotated[
        Path | None,
        typer.Option(
            help="The champion bundle, only read (default: the served one: FRAUD_MODEL_URI, a registry "
            "alias or a path, else FRAUD_MODEL_PATH)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for challenger.fsb and comparison.json (default: `FRAUD_DATA_DIR/retrain/<time>`).",
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            metavar="<preset|yaml>",
            help="The challenger's feature spec: a preset (handbook, handbook_tuned, ...) or a YAML file. "
            "Default: the champion's spec, so the logged feature vectors can be used.",
        ),
    ] = None,
    eval_days: Annotated[
        float, typer.Option(min=0.01, help="Days in the evaluation window, the newest fully labelled ones.")
    ] = 7.0,
    label_delay_days: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Days after which a transaction without a fraud label is taken as legitimate; also the "
            "gap before the evaluation window.",
        ),
    ] = 7.0,
    min_fraud: Annotated[
        int, typer.Option(min=1, help="Fewest labelled frauds in the training period to train on.")
    ] = 20,
    models: ModelsOpt = "xgboost,logistic,isolation_forest",
    trials: TrialsOpt = 12,
    folds: FoldsOpt = 3,
    block_fpr: BlockFprOpt = 0.001,
    flag_fpr: FlagFprOpt = 0.01,
    threads: ThreadsOpt = None,
    register: Annotated[
        bool,
        typer.Option(
            help="Also register the challenger in the MLflow Model Registry (FRAUD_MLFLOW_TRACKING_URI) "
            "under the alias challenger; it becomes champion only where the model has none yet."
        ),
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="<s3://bucket/prefix|folder>",
            help="Read the history from the object-store archive (see `fraudstream archive`) instead of "
            "the database: its decisions, logged features, transactions and labels.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a challenger on the decisions, features and labels in the database, and compare it with
    the champion on the newest fully labelled window. The champion is never replaced: promote the
    challenger yourself if it is better (fraudstream models promote).

    Training uses the feature vectors logged at decision time when they match the feature spec (the
    champion's, or --features), else computes features again from the stored transactions, and says
    which. A transaction counts as fraud from its fraud label's time; one without a fraud label is
    legitimate from --label-delay-days after it. Training uses the labels known at the evaluation
    window's start; evaluation those known now. With --data, all of it comes from the archive.

    Example: fraudstream retrain --since 60d --trials 20
    """
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.features import FeatureSet
    from fraudstream.storage import open_store
    from fraudstream.training.metrics import json_ready
    from fraudstream.training.models import TrainConfig
    from fraudstream.training.retrain import default_out_dir, duration
    from fraudstream.training.retrain import retrain as run

    with errors():
        try:
            history = duration(since)
        except ValueError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
        refresh_stale_kernels()
        settings = Settings()
        config = TrainConfig(
            models=tuple(m.strip() for m in models.split(",") if m.strip()), trials=trials, folds=folds,
            threads=threads or settings.threads, seed=settings.seed, block_fpr=block_fpr, flag_fpr=flag_fpr,
        )  # fmt: skip
        spec = FeatureSet.load(features) if features else None
        if champion is None:  # the served bundle: a registry alias is resolved (and cached) as serve does
            from fraudstream.registry import load_model

            champion_path = load_model(settings)[1].path
        else:
            champion_path = champion
        folder = out_dir or default_out_dir(settings.data_dir)
        with ExitStack() as stack:
            if data is not None:
                from fraudstream.archive.history import ArchiveHistory

                source: Any = ArchiveHistory(data)
            else:
                source = stack.enter_context(open_store(settings.db_url))
                source.migrate()
            with progress() as bar:
                result = run(
                    source, champion_path, folder, since=history, config=config, until=utc(until),
                    label_delay=timedelta(days=label_delay_days), eval_days=timedelta(days=eval_days),
                    features=spec, min_fraud=min_fraud, progress=bar,
                )  # fmt: skip
        comparison = result.comparison()
        console.print(f"features: {result.features.source} ({result.features.reason})")
        console.print(
            f"challenger [bold]{result.challenger.manifest.version}[/] → {result.challenger_path}; "
            f"comparison → {folder / 'comparison.json'}; the champion {champion_path} is unchanged"
        )
        if register:  # after both files are written: a registry that fails loses nothing
            comparison["registered"] = _register(result.challenger_path, comparison, settings)
            text = json.dumps(json_ready(comparison), indent=2)
            (result.challenger_path.parent / "comparison.json").write_text(text + "\n")
            console.print(f"registered as {comparison['registered'].get('uri', comparison['registered'])}")
        emit(comparison, as_json, comparison_table(comparison))


def _register(path: Path, comparison: dict[str, Any], settings: Settings) -> Any:
    """Register the challenger in the MLflow Model Registry with the alias ``challenger``, its
    evaluation metrics and the comparison (see :func:`fraudstream.registry.register`)."""
    from fraudstream.registry import register

    return register(path, comparison["challenger"]["metrics"], settings=settings, comparison=comparison)


LABELS = {
    "roc_auc": "ROC AUC",
    "average_precision": "average precision",
    "recall_at_0_1pct_fpr": "recall @ 0.1% FPR",
    "recall_at_1pct_fpr": "recall @ 1% FPR",
    "precision_at_100": "precision @ 100",
    "card_precision_at_100": "card precision @ 100",
}


def comparison_table(comparison: dict[str, Any]) -> Table:
    """Champion and challenger side by side on the same window, with the change."""
    from fraudstream.training.retrain import COMPARED

    periods = comparison["periods"]
    start, end = (datetime.fromisoformat(periods[k]) for k in ("eval_start", "eval_end"))
    champion, challenger = comparison["champion"]["metrics"], comparison["challenger"]["metrics"]
    table = Table(title=f"champion vs challenger\n{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC")
    table.add_column("metric")
    table.add_column("champion", justify="right")
    table.add_column("challenger", justify="right")
    table.add_column("change", justify="right")
    # the versions go under the table: a column wide enough for them squeezes the metric names
    champion_v, challenger_v = comparison["champion"]["version"], comparison["challenger"]["version"]
    table.caption = f"champion   {champion_v}\nchallenger {challenger_v}"
    table.add_row("transactions", str(champion["n"]), str(challenger["n"]), "")
    table.add_row("frauds", str(champion["n_fraud"]), str(challenger["n_fraud"]), "")
    for key in COMPARED:
        delta = comparison["delta"][key]
        change = "—" if delta is None else f"{delta:+.4f}"
        if delta:
            change = f"[{'green' if delta > 0 else 'red'}]{change}[/]"
        table.add_row(LABELS[key], _fmt(champion[key]), _fmt(challenger[key]), change)
    return table


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"
