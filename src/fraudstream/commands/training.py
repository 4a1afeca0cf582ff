"""Commands for data and models: generate, train, evaluate, backtest, datasets."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from fraudstream.commands.common import (
    BlockFprOpt,
    DataOpt,
    DatasetOpt,
    DatasetsDirOpt,
    FeaturesOpt,
    FlagFprOpt,
    FoldsOpt,
    JsonOpt,
    MappingOpt,
    ModelsOpt,
    PathOpt,
    SkipBadRowsOpt,
    ThreadsOpt,
    TrialsOpt,
    console,
    date_option,
    emit,
    errors,
    featurize,
    out,
    positive,
    progress,
    read_source,
    settings_with,
    utc,
)
from fraudstream.config import Settings


def generate(
    out_path: Annotated[
        Path | None, typer.Option("--out", help="File to write (.parquet, .csv, .jsonl).")
    ] = None,
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 2000,
    merchants: Annotated[int, typer.Option(min=1, help="Number of merchants.")] = 200,
    days: Annotated[float, typer.Option(min=0.01, help="Time span in days.")] = 30.0,
    fraud_rate: Annotated[float, typer.Option(min=0.0, max=0.5, help="Target share of fraud.")] = 0.01,
    label_delay_days: Annotated[
        float, typer.Option(min=0.0, help="Median delay of fraud labels (chargebacks).")
    ] = 7.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 7,
    start: Annotated[datetime | None, date_option("First day of the data")] = None,
    rate: Annotated[
        float | None,
        typer.Option(callback=positive, help="Stream JSON lines to stdout at this many per second."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(callback=positive, help="With --rate: stop after this many seconds.")
    ] = None,
) -> None:
    """Generate synthetic transactions with named fraud scenarios and delayed labels."""
    from fraudstream.datasets.generator import GeneratorConfig
    from fraudstream.datasets.generator import generate as make
    from fraudstream.datasets.io import stream_frame, write_frame

    with errors():
        config = GeneratorConfig(
            n_customers=customers, n_merchants=merchants, days=days, fraud_rate=fraud_rate,
            label_delay_days=label_delay_days, seed=seed, start=utc(start) or GeneratorConfig.start,
        )  # fmt: skip
        with console.status("generating transactions"):
            frame = make(config)
        if rate is not None:

            def emit(records: list[dict[str, Any]]) -> None:
                for record in records:
                    sys.stdout.write(json.dumps(record, default=str) + "\n")
                sys.stdout.flush()

            sent = stream_frame(frame, rate=rate, emit=emit, duration=duration)
            console.print(f"streamed {sent:,} transactions at {rate:g}/s")
            return
        path = out_path or Settings().data_dir / "transactions.parquet"
        write_frame(frame, path)
        fraud = frame["is_fraud"].astype(bool)
        console.print(f"wrote {len(frame):,} transactions ({fraud.mean():.2%} fraud) to [bold]{path}[/]")


def train(
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    paths: PathOpt = None,
    mapping: MappingOpt = None,
    skip_bad_rows: SkipBadRowsOpt = False,
    features: FeaturesOpt = None,
    datasets_dir: DatasetsDirOpt = None,
    train_start: Annotated[datetime | None, date_option("Training start (default: start of data)")] = None,
    train_end: Annotated[datetime | None, date_option("Training end (default: before gap and test)")] = None,
    gap_days: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Label-delay gap between training and test (default: 7, or a twentieth of a data span "
            "shorter than 28 days).",
        ),
    ] = None,
    test_days: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Days tested after the gap, 0 for no test (default: 7, or a fifth of a data span shorter "
            "than 28 days).",
        ),
    ] = None,
    model_out: Annotated[
        Path | None, typer.Option("--out", help="Bundle to write (default: FRAUD_DATA_DIR/model.fsb).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the model at FRAUD_DATA_DIR/model.fsb even when it reads other features than this "
            "one (without --out, train refuses to, before training)."
        ),
    ] = False,
    models: ModelsOpt = "xgboost,logistic,isolation_forest",
    trials: TrialsOpt = 12,
    folds: FoldsOpt = 3,
    smote: Annotated[
        bool, typer.Option(help="Oversample fraud with SMOTE instead of class weights.")
    ] = False,
    block_fpr: BlockFprOpt = 0.001,
    flag_fpr: FlagFprOpt = 0.01,
    threads: ThreadsOpt = None,
    register: Annotated[
        bool,
        typer.Option(
            help="Register the bundle in the MLflow Model Registry (FRAUD_MLFLOW_TRACKING_URI) as the "
            "challenger; the model's first version also becomes champion."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train models on a time window and write a model bundle; evaluate on the window after the gap.

    Without dates, the test window is the last --test-days of the data, the gap precedes it, and
    training uses everything before the gap. Labels are used only if known by the test start.
    """
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.events.mapping import read_mapping
    from fraudstream.training.backtest import Windows, evaluate_window, train_window
    from fraudstream.training.importance import top_features
    from fraudstream.training.models import TrainConfig
    from fraudstream.training.report import (
        caution,
        evaluation_table,
        importance_table,
        selection_summary,
        selection_table,
    )

    with errors():
        refresh_stale_kernels()
        settings = settings_with(datasets_dir)
        if register and not settings.mlflow_tracking_uri:
            raise ValueError(
                "--register needs the MLflow server: set FRAUD_MLFLOW_TRACKING_URI "
                "(http://127.0.0.1:5050 for `make services`)"
            )
        config = TrainConfig(
            models=tuple(m.strip() for m in models.split(",") if m.strip()), trials=trials, folds=folds,
            threads=threads or settings.threads, seed=settings.seed, smote=smote, block_fpr=block_fpr,
            flag_fpr=flag_fpr,
        )  # fmt: skip
        delay = DEFAULT_DAYS if gap_days is None else gap_days  # until the span is known
        frame, stored = read_source(settings, data, dataset, delay, paths, mapping)
        first, last = frame["timestamp"].min().to_pydatetime(), frame["timestamp"].max().to_pydatetime()
        gap_days, test_days, why = fit_windows((last - first) / timedelta(days=1), gap_days, test_days)
        if why is not None:
            console.print(why)
            if dataset is not None and stored is None:  # its labels arrive one gap after the payment
                frame, stored = read_source(settings, data, dataset, gap_days, paths, mapping)
        end = utc(train_end) or last - timedelta(days=gap_days + test_days)
        if utc(train_start) is None and end <= first:
            raise ValueError(
                f"the data spans {(last - first) / timedelta(days=1):.2f} days: a {gap_days:g}-day gap and a "
                f"{test_days:g}-day test leave nothing to train on; pass smaller --gap-days and --test-days"
            )
        windows = Windows(utc(train_start) or first, end, timedelta(days=gap_days), timedelta(days=test_days))
        engine, featured = featurize(frame, features, dataset, windows.train_end, stored)
        path = model_out or settings.bundle_path
        if model_out is None and not overwrite:
            refuse_other_model(path, engine.feature_set)
        tested = test_days > 0 and featured.between(windows.test_start, windows.test_end).size > 0
        with progress() as bar:
            bundle = train_window(featured, windows, engine, config, bar)
            if tested:
                bar("evaluate the test window", 0, 1)
                ev = evaluate_window(
                    featured, bundle, windows.test_start, windows.test_end, known_since=windows.train_start
                )
                bar("evaluate the test window", 1, 1)
        if mapping is not None:  # the live paths read the team's events as training read its file
            bundle.manifest.input_mapping = read_mapping(mapping).to_dict()
        payload: dict[str, Any] = {"bundle": str(bundle.save(path)), "version": bundle.manifest.version}
        payload |= {"weights": bundle.manifest.weights, "thresholds": bundle.manifest.thresholds}
        selection = bundle.manifest.metrics["selection"]
        payload["selection"] = selection
        payload["features"] = {"spec": engine.feature_set.version, "count": len(engine.names)}
        payload["top_features"] = top_features(bundle)
        test: dict[str, Any] = {}
        table = None
        if tested:
            test = ev.to_dict()
            shown = "%Y-%m-%d" if windows.test_days >= timedelta(days=2) else "%Y-%m-%d %H:%M"
            table = evaluation_table(
                ev, f"test {windows.test_start.strftime(shown)} .. {windows.test_end.strftime(shown)}"
            )
            note = caution(ev)
            if note is not None:
                console.print(f"[bold yellow]{note}")
                payload["caution"] = note
        payload["test"] = test
        if settings.mlflow_tracking_uri:
            from fraudstream.training.tracking import log_to_mlflow

            payload["mlflow_run_id"] = log_to_mlflow(settings.mlflow_tracking_uri, bundle, path, test)
        if register:
            from fraudstream.registry import register as add_version

            payload["registered"] = add_version(
                path, test, settings=settings, run_id=payload["mlflow_run_id"]
            )
        weights = ", ".join(f"{name} {w:.2f}" for name, w in bundle.manifest.weights.items() if w > 0)
        flag, block = bundle.manifest.thresholds["flag"], bundle.manifest.thresholds["block"]
        console.print(selection_summary(selection))
        console.print(
            f"model [bold]{bundle.manifest.version}[/] → {path} (weights: {weights}; "
            f"FLAG ≥ {flag:.4f}, BLOCK ≥ {block:.4f})"
        )
        if register:
            done = payload["registered"]
            console.print(f"registered {done['uri']} ({', '.join(done['aliases'])})")
        if not as_json:
            out.print(selection_table(selection))
        emit(payload, as_json, table)
        if not as_json:
            out.print(importance_table(payload["top_features"]))


DEFAULT_DAYS = 7.0
"""The label-delay gap and the test window, in days, when the data spans long enough for them."""
SHORT_SPAN_DAYS = 4 * DEFAULT_DAYS
"""Data spanning less than this gets a gap and a test window scaled to it, when none is given."""


def fit_windows(
    span_days: float, gap_days: float | None, test_days: float | None
) -> tuple[float, float, str | None]:
    """The gap and test window to use on data spanning ``span_days``, and what to say when they were
    scaled to it: what is given stands; what is not is 7 days, or for data shorter than 28 days a
    twentieth (gap) and a fifth (test) of its span, so a short sample trains without flags."""
    if span_days >= SHORT_SPAN_DAYS or (gap_days is not None and test_days is not None):
        return (
            DEFAULT_DAYS if gap_days is None else gap_days,
            DEFAULT_DAYS if test_days is None else test_days,
            None,
        )
    gap = round(span_days / 20, 4) if gap_days is None else gap_days
    test = round(span_days / 5, 4) if test_days is None else test_days
    why = (
        f"the data spans {span_days:.2f} days, too short for the default 7-day gap and 7-day test: "
        f"a {gap:g}-day gap and a {test:g}-day test window (choose with --gap-days and --test-days)"
    )
    return gap, test, why


def refuse_other_model(path: Path, feature_set: Any) -> None:
    """Refuse to replace, unasked, the bundle at ``path`` when it reads other features than
    ``feature_set``: it is someone else's model (the demo's, another dataset's), which everything
    serving from that path would silently swap for this one. The same features: a retrain, replaced."""
    from fraudstream.models.bundle import BundleError, read_manifest

    if not path.exists():
        return
    try:
        manifest = read_manifest(path)
    except BundleError:
        raise ValueError(
            f"{path} exists and is not a model bundle: write the model elsewhere with --out PATH, "
            "or replace that file with --overwrite"
        ) from None
    if manifest.feature_set_version == feature_set.version and manifest.feature_names == feature_set.names:
        return
    raise ValueError(
        f"{path} holds model {manifest.version}, trained on other features (spec "
        f"{manifest.feature_set_version!r}, {len(manifest.feature_names)} features) than this one (spec "
        f"{feature_set.version!r}, {len(feature_set.names)} features), and whatever serves that path would "
        "switch to this one: write it elsewhere with --out PATH (and serve it with --model PATH), or "
        "replace that model with --overwrite"
    )


def evaluate(
    model: Annotated[
        Path | None, typer.Option(help="Model bundle (default: FRAUD_DATA_DIR/model.fsb).")
    ] = None,
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    paths: PathOpt = None,
    mapping: MappingOpt = None,
    skip_bad_rows: SkipBadRowsOpt = False,
    datasets_dir: DatasetsDirOpt = None,
    test_start: Annotated[
        datetime | None,
        date_option(
            "Test start (default: the window train tested on, if in the data; else test end minus 7 days)"
        ),
    ] = None,
    test_end: Annotated[
        datetime | None, date_option("Test end, exclusive (default: that window's end, else the end of data)")
    ] = None,
    gap_days: Annotated[float, typer.Option(min=0.0, help="Label delay assumed for dataset labels.")] = 7.0,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model bundle on a time window: AUC, AP, recall at FPR, card precision@100, confusion."""
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.features import FeatureEngine
    from fraudstream.models.bundle import load_bundle
    from fraudstream.training.backtest import Featured, evaluate_window
    from fraudstream.training.importance import top_features
    from fraudstream.training.report import caution, evaluation_table, importance_table

    with errors():
        refresh_stale_kernels()
        settings = settings_with(datasets_dir)
        bundle = load_bundle(model or settings.bundle_path)
        frame, stored = read_source(settings, data, dataset, gap_days, paths, mapping)
        start, end = utc(test_start), utc(test_end)
        tested = bundle.manifest.params.get("windows", {})
        if start is None and end is None and "test_start" in tested:  # the window train tested on
            start = datetime.fromisoformat(tested["test_start"])
            end = datetime.fromisoformat(tested["test_end"])
            console.print(
                f"testing on the window train tested on: {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"
            )
        end = end or frame["timestamp"].max().to_pydatetime() + timedelta(microseconds=1)
        start = start or end - timedelta(days=7)
        engine = FeatureEngine(bundle.feature_set())
        if stored and stored.feature_set.computes_same(engine.feature_set):
            console.print(f"using the {len(engine.names)} features stored in the file: not recomputing them")
            featured = Featured.build(frame, engine, values=stored.values)
        else:
            with console.status(f"computing {len(engine.names)} features for {len(frame):,} transactions"):
                featured = Featured.build(frame, engine)
        ev = evaluate_window(featured, bundle, start, end)
        top = top_features(bundle)
        note = caution(ev)
        if note is not None:
            console.print(f"[bold yellow]{note}")
        emit(
            {"model": bundle.manifest.version, **ev.to_dict(), "top_features": top, "caution": note},
            as_json,
            evaluation_table(ev, f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}"),
        )
        if not as_json:
            out.print(importance_table(top))


def backtest(
    test_start: Annotated[
        list[datetime], typer.Option(formats=["%Y-%m-%d"], help="Start of a test window (repeat).")
    ],
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    paths: PathOpt = None,
    mapping: MappingOpt = None,
    skip_bad_rows: SkipBadRowsOpt = False,
    features: FeaturesOpt = None,
    datasets_dir: DatasetsDirOpt = None,
    train_days: Annotated[
        float, typer.Option(callback=positive, help="Days of training before the gap.")
    ] = 7.0,
    gap_days: Annotated[float, typer.Option(min=0.0, help="Label-delay gap in days.")] = 7.0,
    test_days: Annotated[float, typer.Option(callback=positive, help="Days in each test window.")] = 7.0,
    trials: Annotated[int, typer.Option(min=0, help="Search trials per model and window.")] = 12,
    models: Annotated[
        str, typer.Option(help="Comma-separated models.")
    ] = "xgboost,logistic,isolation_forest",
    as_json: JsonOpt = False,
) -> None:
    """Train and test once per --test-start: the Fraud Detection Handbook's protocol by default.

    Example: fraudstream backtest --dataset handbook --test-start 2018-06-02 --test-start 2018-06-09
    """
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.training.backtest import backtest as run
    from fraudstream.training.models import TrainConfig
    from fraudstream.training.report import mean_evaluation, protocol_table

    with errors():
        refresh_stale_kernels()
        settings = settings_with(datasets_dir)
        config = TrainConfig(
            models=tuple(models.split(",")), trials=trials, threads=settings.threads, seed=settings.seed
        )
        frame, stored = read_source(settings, data, dataset, gap_days, paths, mapping)
        starts = [s for s in (utc(t) for t in test_start) if s is not None]
        first_train = min(starts) - timedelta(days=gap_days) if starts else None
        engine, featured = featurize(frame, features, dataset, first_train, stored)
        with progress() as bar:
            rows = run(featured, starts, engine, config, train_days=train_days, gap_days=gap_days,
                       test_days=test_days, progress=bar)  # fmt: skip
        payload = {"windows": {label: ev.to_dict() for label, ev in rows}, "mean": mean_evaluation(rows)}
        baseline = {"roc_auc": 0.872, "average_precision": 0.69, "card_precision_at_100": 0.30}
        title = f"backtest: train {train_days:g} d, gap {gap_days:g} d, test {test_days:g} d"
        emit(payload, as_json, protocol_table(rows, title, baseline if dataset == "handbook" else None))


def datasets(datasets_dir: DatasetsDirOpt = None) -> None:
    """List the public datasets fraudstream can read, and whether their files are present."""
    from fraudstream.datasets.registry import DATASETS

    settings = settings_with(datasets_dir)
    for name, spec in DATASETS.items():
        present = all((settings.datasets_dir / p).is_file() for p in spec.paths)
        mark = "[green]present[/]" if present else "[red]missing[/]"
        out.print(f"{name:<11} {mark}  {spec.description}")
    out.print(f"\nfolder: {settings.datasets_dir.resolve()} (set --datasets-dir or FRAUD_DATASETS_DIR)")
