"""Commands that run the engine: serve, worker, simulate, replay and the all-in-one demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fraudstream.commands.common import (
    DatasetsDirOpt,
    JsonOpt,
    SkipBadRowsOpt,
    check_port,
    console,
    emit,
    errors,
    positive,
    progress,
    say_start_notes,
    settings_with,
)
from fraudstream.config import Settings

RateOpt = Annotated[float, typer.Option(min=0.1, callback=positive, help="Transactions per second.")]
DurationOpt = Annotated[
    float | None, typer.Option(callback=positive, help="Stop after this many seconds (default: Ctrl-C).")
]
ServedModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model to serve: a bundle file, or models:/NAME@ALIAS or models:/NAME/VERSION from the MLflow "
        "registry (env FRAUD_MODEL_URI; default: FRAUD_MODEL_PATH, else FRAUD_DATA_DIR/model.fsb).",
    ),
]
SourceOpt = Annotated[
    str, typer.Option("--source", help="'generator', or a dataset: handbook, fraud_ecom, paysim, sparkov.")
]


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (env FRAUD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (env FRAUD_PORT).")] = None,
    with_worker: Annotated[bool, typer.Option(help="Also run a worker in this process.")] = True,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (costs throughput; /metrics counts them anyway).")
    ] = False,
    model: ServedModelOpt = None,
) -> None:
    """Run the HTTP API (and, by default, a worker in the same process).

    It stores decisions in FRAUD_DATABASE_URL (default: FRAUD_DATA_DIR/fraudstream.db); the demo's are
    in demo.db, and serve says how to open those when it finds them.
    """
    import uvicorn

    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.api import create_app
    from fraudstream.api.server import server_options
    from fraudstream.commands.demo import demo_hint

    with errors():
        refresh_stale_kernels()
        settings = served(Settings(), model)
        say_start_notes()
        hint = demo_hint(settings)
        if hint:
            console.print(hint, soft_wrap=True)
        host, port = host or settings.host, port or settings.port
        check_port(host, port)
        check_model(settings)
        app = create_app(settings, run_worker=with_worker)
        uvicorn.run(
            app, host=host, port=port, log_level="info",
            access_log=access_log,
            timeout_graceful_shutdown=5,  # open /v1/stream connections never end by themselves
            **server_options(settings),
        )  # fmt: skip


def served(settings: Settings, model: str | None) -> Settings:
    """``settings`` serving ``model`` (a path or a registry URI) when one is given, as FRAUD_MODEL_URI."""
    return settings.model_copy(update={"model_uri": model}) if model else settings


def check_model(settings: Settings) -> None:
    """Refuse, here and in one line rather than in the server's start-up, a model file that is missing
    or is not a bundle, and a rules file of one's own (FRAUD_RULES_PATH) that names what the model
    does not compute. A registry URI is resolved, and its rules checked, when the server starts."""
    from fraudstream.models.bundle import load_bundle, read_manifest
    from fraudstream.registry import is_registry_uri

    uri = (settings.model_uri or "").strip()
    if is_registry_uri(uri):
        return
    path = Path(uri.removeprefix("file://")) if uri else settings.bundle_path
    read_manifest(path)
    if settings.rules_path is not None and settings.rules_source == "file":
        from fraudstream.rules.loader import load_rules
        from fraudstream.rules.names import default_known_names

        load_rules(settings.rules_path, default_known_names(load_bundle(path).feature_set()))


def worker(
    burst: Annotated[bool, typer.Option(help="Stop when the queue is empty instead of waiting.")] = False,
    check: Annotated[
        bool, typer.Option(help="Only check the running worker's heartbeat: exit 0 if alive, 1 if not.")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100_000,
            help="Most messages per batch (env FRAUD_BATCH_SIZE, default 500). Under a backlog larger batches"
            " cost less per transaction: 10,000-20,000 for a dedicated worker.",
        ),
    ] = None,
    model: ServedModelOpt = None,
) -> None:
    """Consume transactions in batches, score them, store the decisions; Ctrl-C or SIGTERM stops cleanly.

    Scale with more workers, one or more per core; each runs its kernels on one thread (FRAUD_WORKER_THREADS).
    """
    from fraudstream.brokers import publishes_results
    from fraudstream.runtime import open_worker
    from fraudstream.worker.health import HEALTH_FILE, check_health
    from fraudstream.worker.worker import DEAD_LETTERS, RESULTS

    settings = Settings()
    health_file = settings.data_dir / HEALTH_FILE
    if check:
        alive, line = check_health(health_file)
        console.print(line)
        raise typer.Exit(0 if alive else 1)
    with errors():
        settings = served(settings, model)
        say_start_notes()
        check_model(settings)
        results = publishes_results(settings.broker_url)  # decisions and dead letters to redis:// or kafka://
        with open_worker(
            settings, lambda line: console.print(line, soft_wrap=True),
            batch_size=batch_size or settings.batch_size, max_wait=settings.max_wait, health_file=health_file,
            results_topic=RESULTS if results else None, dead_letters_topic=DEAD_LETTERS if results else None,
        ) as w:  # fmt: skip
            w.install_signal_handlers()
            console.print(
                f"worker: model {w.decider.scorer.version}, broker {settings.broker_url}, Ctrl-C to stop"
            )
            stats = w.run(burst=burst)
        console.print(
            f"worker stopped: {stats.decided:,} decided, {stats.duplicates:,} duplicates, {stats.dead:,} dead"
        )


def simulate(
    source: SourceOpt = "generator",
    rate: RateOpt = 100.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many transactions.")] = None,
    duration: Annotated[
        float | None, typer.Option(callback=positive, help="Stop after this many seconds.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="POST to this API (e.g. http://127.0.0.1:8000).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="FRAUD_API_KEY", help="API key for --url.")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 99,
    customers: Annotated[int, typer.Option(min=1, help="Generator: customers.")] = 500,
    days: Annotated[float, typer.Option(min=0.01, help="Generator: days of traffic.")] = 7.0,
    datasets_dir: DatasetsDirOpt = None,
) -> None:
    """Stream generated or dataset transactions into fraudstream at a target rate.

    Without --url they go straight to the workers, as the API would send them: through the broker
    FRAUD_BROKER_URL names (the database's durable queue by default).
    """
    from fraudstream.datasets.simulate import Simulation, traffic

    with errors():
        settings = settings_with(datasets_dir)
        frame = traffic(source, settings.datasets_dir, customers=customers, days=days, seed=seed)
        closing: list[Callable[[], None]] = []
        if url:
            import httpx

            client = httpx.Client(base_url=url, headers={"X-API-Key": api_key} if api_key else {}, timeout=30)

            def sink(batch: list[Any]) -> Any:
                body = [t.model_dump(mode="json") for t in batch]
                return client.post("/v1/transactions", json=body).raise_for_status()
        else:
            from fraudstream.runtime import settings_broker
            from fraudstream.storage import open_store
            from fraudstream.worker.enqueue import enqueue

            store = open_store(settings.db_url)
            store.migrate()
            broker = settings_broker(settings, store)
            closing.extend((broker.close, store.close))

            def sink(batch: list[Any]) -> Any:
                key = settings.partition_key
                return enqueue(store, broker, settings.broker_url, batch, partition_key=key)

        sim = Simulation(frame, rate, sink, limit=limit, duration=duration, name=source)
        console.print(f"streaming {min(limit or len(frame), len(frame)):,} transactions at {rate:g}/s")
        try:
            sim.run()
        finally:
            for close in closing:
                close()
        status = sim.status()
        sent, took, actual = status["sent"], status["elapsed_s"], status["actual_rate"]
        console.print(f"sent {sent:,} in {took} s ({actual}/s), errors {status['errors']}")


def replay(
    dataset: Annotated[str, typer.Argument(help="A public dataset (handbook, ...) or a transactions file.")],
    model: Annotated[
        Path | None, typer.Option(help="Model bundle (default: FRAUD_DATA_DIR/model.fsb).")
    ] = None,
    store_decisions: Annotated[
        bool, typer.Option("--store/--no-store", help="Write decisions to the database.")
    ] = True,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Transactions per batch: larger is faster (fewer history look-ups), and takes more memory.",
        ),
    ] = 100_000,
    datasets_dir: DatasetsDirOpt = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            metavar="<yaml>",
            help="For your own file: the YAML mapping of its columns that train read it with.",
        ),
    ] = None,
    keep_transactions: Annotated[
        bool,
        typer.Option(
            "--keep-transactions",
            help="Store the transactions beside their decisions, so that `serve` and `worker` started on "
            "this database begin with this history in their feature state: your history, loaded before "
            "going live.",
        ),
    ] = False,
    skip_bad_rows: SkipBadRowsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a dataset through the full online path (state, models, rules, storage) and evaluate it.

    An offline backtest of exactly what production would do: fraud labels reach the feature state
    only once their label time has passed. Your own file goes through with the mapping train read it
    with: `fraudstream replay export.csv --mapping mapping.yaml --model shop.fsb`. With
    --keep-transactions it loads that history into the store (and a Redis feature state) that
    production then starts from, so existing customers are not new on day one.
    """
    from fraudstream._gc import paused_gc
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.datasets.io import read_frame
    from fraudstream.datasets.registry import DATASETS, load_dataset
    from fraudstream.models.bundle import load_bundle
    from fraudstream.runtime import open_services
    from fraudstream.training import metrics
    from fraudstream.training.report import evaluation_table
    from fraudstream.worker.replay import replay as run

    with errors():
        refresh_stale_kernels()
        settings = settings_with(datasets_dir)
        if keep_transactions and not store_decisions:
            raise ValueError(
                "--keep-transactions stores the transactions with their decisions: drop --no-store"
            )
        if mapping is not None:
            from fraudstream.datasets.source import load_source

            frame = load_source(
                settings, Path(dataset), None, 7.0, mapping=mapping, skip_bad_rows=skip_bad_rows
            )
        elif dataset in DATASETS:
            frame = load_dataset(dataset, settings.datasets_dir, skip_bad_rows=skip_bad_rows)
        else:
            frame = read_frame(Path(dataset), skip_bad_rows=skip_bad_rows)
        frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
        services = open_services(settings, bundle=load_bundle(model or settings.bundle_path), warm=False)
        try:
            with progress() as bar:
                result = run(frame, services.scorer, services.store if store_decisions else None,
                             batch_size=batch_size, progress=bar, around_batch=paused_gc,
                             keep_transactions=keep_transactions and store_decisions)  # fmt: skip
        finally:
            services.close()
        console.print(
            f"replayed {len(frame):,} transactions in {result.seconds:.1f} s = {result.rate:,.0f}/s, "
            f"{result.stored:,} decisions stored"
        )
        payload: dict[str, Any] = {"transactions": len(frame), "seconds": result.seconds, "rate": result.rate}
        labelled = frame["is_fraud"].notna().to_numpy()
        if not labelled.any():  # a history without outcomes: loaded, nothing to evaluate
            emit(payload, as_json)
            return
        thresholds = services.scorer.bundle.manifest.thresholds
        ts = frame["timestamp"]
        ev = metrics.evaluate(
            frame["is_fraud"].to_numpy(dtype=bool, na_value=False)[labelled], result.probability[labelled],
            flag_threshold=thresholds["flag"], block_threshold=thresholds["block"],
            day=ts.dt.floor("D").to_numpy()[labelled], customer=frame["customer_id"].to_numpy()[labelled],
            scenario=frame["fraud_scenario"].astype(object).to_numpy()[labelled],
        )  # fmt: skip
        emit({**payload, **ev.to_dict()}, as_json, evaluation_table(ev, f"replay of {dataset}"))


def demo(
    duration: DurationOpt = None,
    rate: RateOpt = 50.0,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="API port (env FRAUD_PORT).")] = None,
    trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="Search trials per model when training first (0: the default hyperparameters, which score "
            "the demo's traffic as well as a search and train in about a minute).",
        ),
    ] = 0,
    dashboard: Annotated[bool, typer.Option(help="Also start the Streamlit dashboard.")] = True,
    dashboard_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Dashboard port (env FRAUD_DASHBOARD_PORT).")
    ] = None,
) -> None:
    """The main job: train if no model exists, then run API, worker, simulator and dashboard in one process.

    Everything runs on embedded defaults (SQLite in FRAUD_DATA_DIR/demo.db, afresh each run; in-process
    state; the database queue). It prints the URLs, streams simulated traffic at --rate and ends with a
    summary of what was decided, and the command that serves the decisions again.
    """
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.commands.demo import run_demo

    with errors():
        refresh_stale_kernels()
        run_demo(
            Settings(), duration=duration, rate=rate, port=port, trials=trials,
            dashboard=dashboard, dashboard_port=dashboard_port,
        )  # fmt: skip
