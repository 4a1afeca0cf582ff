"""``fraudstream demo``: train if needed, then API + worker + simulator in one process, and a summary.

The generated data is split in time: the first weeks train the model and fill the in-process
feature state, the last two weeks (which training never saw) are streamed live at ``--rate``.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.commands.common import ServingError, check_port, console
from fraudstream.config import Settings

LIVE_DAYS = 14
DEMO_DB = "demo.db"


def demo_database(settings: Settings) -> Path:
    """The SQLite file each demo run starts afresh, in the data folder: the demo's decisions."""
    return settings.data_dir / DEMO_DB


def serve_demo_command(settings: Settings) -> str:
    """The command that serves the last demo's decisions (``serve`` uses ``fraudstream.db`` otherwise)."""
    return f"FRAUD_DATABASE_URL=sqlite:///{demo_database(settings)} {program()} serve"


def program() -> str:
    """How to run ``fraudstream`` from here: its name when the shell finds this installation's by it,
    else its path (``.venv/bin/fraudstream`` after ``make demo``, whose virtual environment is not
    activated)."""
    script = Path(sys.executable).parent / "fraudstream"
    found = shutil.which("fraudstream")
    if not script.exists() or (found is not None and Path(found).resolve() == script.resolve()):
        return "fraudstream"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def demo_hint(settings: Settings) -> str | None:
    """For ``serve`` on the default database while a demo's database exists: where the demo's decisions
    are and how to serve them, since a newcomer who ran the demo first expects to see them."""
    if settings.database_url is not None or not demo_database(settings).exists():
        return None
    default = settings.db_url.removeprefix("sqlite:///")
    return (
        f"serving {default}; the demo's decisions are in {demo_database(settings)}: "
        f"run `{serve_demo_command(settings)}` to serve those"
    )


def prepare(settings: Settings, trials: int) -> pd.DataFrame:
    """The demo's transactions, generated once, and a model trained on them when there is none or the
    one found was saved in a bundle format this version no longer reads. A model on other features
    (trained on a team's own data in the same folder) is refused, not replaced: scoring the demo's
    traffic with it would misjudge it and drop the demo's rules."""
    from fraudstream.commands.training import generate, train
    from fraudstream.datasets.io import read_frame
    from fraudstream.features import default_feature_set
    from fraudstream.models.bundle import BUNDLE_FORMAT, read_manifest

    path = settings.data_dir / "transactions.parquet"
    if not path.exists():
        generate(out_path=path, days=45.0)
    why = None
    if not settings.bundle_path.exists():
        why = "no model yet:[/] training one (about a minute, once)"
    else:
        manifest = read_manifest(settings.bundle_path)
        demo_spec = default_feature_set().version
        if manifest.feature_set_version != demo_spec:
            raise ValueError(
                f"{settings.bundle_path} holds model {manifest.version}, trained on other features (spec "
                f"{manifest.feature_set_version!r}) than the demo's generated traffic (spec {demo_spec!r}): "
                "the demo would misjudge its traffic with it. Run the demo in a folder of its own "
                "(FRAUD_DATA_DIR=demo-data fraudstream demo), or move that model away"
            )
        if manifest.bundle_format != BUNDLE_FORMAT:  # an earlier version's
            why = "the model was saved by an earlier version:[/] training it again (about a minute)"
    if why is not None:
        console.print(f"[bold]{why}")
        train(data=path, trials=trials, gap_days=7.0, test_days=7.0, overwrite=True)
    return read_frame(path)


def _prime(services: Any, history: pd.DataFrame, until: float) -> None:
    """Load the weeks before the live part into the feature state, with the labels known by then."""
    from fraudstream.events.batch import TransactionBatch

    batch = TransactionBatch.from_frame(history)
    services.scorer.engine.record(batch, services.state)
    known = (batch.is_fraud == 1) & (batch.label_time < until)
    services.state.record_labels(
        batch.transaction_id[known], batch.label_time[known], np.ones(known.sum(), bool)
    )


def _server(app: Any, host: str, port: int) -> tuple[Any, threading.Thread]:
    """Start uvicorn on a thread and wait for its start-up, however long the app's lifespan takes."""
    import uvicorn

    # open /v1/stream connections never end by themselves: give them 3 s at shutdown, then cut them
    from fraudstream.api.server import server_options

    settings = app.state.settings
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        **server_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fraudstream-api", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    if not server.started:
        raise ServingError(f"the API could not start on {host}:{port} (see the log above; try --port)")
    return server, thread


def _dashboard(settings: Settings, api_url: str, port: int | None) -> Any:
    """Start the dashboard for the demo's API; ``None`` (and a line saying why) if it cannot start."""
    from fraudstream.commands.dashboard import DashboardError, start_dashboard

    key = next(iter(sorted(settings.api_key_set)), None)
    port = port or settings.dashboard_port
    log = settings.data_dir / "dashboard.log"
    try:
        process = start_dashboard(api_url, host=settings.host, port=port, api_key=key, log=log)
    except DashboardError as error:
        console.print(f"  [yellow]no dashboard:[/] {error}")
        return None
    console.print(f"  {'dashboard':<10} http://{settings.host}:{port} (log: {log})")
    return process


def run_demo(
    settings: Settings,
    *,
    duration: float | None,
    rate: float,
    port: int | None,
    trials: int,
    dashboard: bool = True,
    dashboard_port: int | None = None,
) -> None:
    from fraudstream.api import create_app
    from fraudstream.datasets.simulate import Simulation
    from fraudstream.runtime import open_services

    check_port(settings.host, port or settings.port)
    frame = prepare(settings, trials)
    split = frame["timestamp"].max() - timedelta(days=LIVE_DAYS)
    history, live = (
        frame[frame["timestamp"] < split],
        frame[frame["timestamp"] >= split].reset_index(drop=True),
    )
    db = demo_database(settings)
    for leftover in (db, db.with_name(DEMO_DB + "-wal"), db.with_name(DEMO_DB + "-shm")):
        leftover.unlink(missing_ok=True)
    settings = settings.model_copy(update={"database_url": f"sqlite:///{db}", "port": port or settings.port})
    services = open_services(settings, warm=False)
    with console.status(f"loading {len(history):,} earlier transactions into the feature state"):
        _prime(services, history, split.timestamp())
    app = create_app(settings, services, run_worker=True)
    with console.status("starting the API (its warm-up compiles the kernels on a first run: up to a minute)"):
        server, thread = _server(app, settings.host, settings.port)
    base = f"http://{settings.host}:{settings.port}"
    sim = Simulation(live, rate, services.store.queue.accept, duration=duration, name="demo")
    keys = "; API keys are set" if settings.api_key_set else ""  # without keys, the API's start-up says so
    console.print(f"[bold green]fraudstream demo[/] model {services.scorer.version}{keys}")
    links = {"API docs": "/docs", "decisions": "/v1/decisions?decision=BLOCK", "stats": "/v1/stats"}
    for label, path in (links | {"metrics": "/metrics"}).items():
        console.print(f"  {label:<10} {base}{path}")
    board = _dashboard(settings, base, dashboard_port) if dashboard else None
    console.print(f"  streaming {len(live):,} unseen transactions at {rate:g}/s — Ctrl-C to stop")
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.time()
    sim.start()
    try:
        while not stop.is_set() and sim.running:
            stop.wait(1.0)
    finally:
        sim.stop()
        if board is not None:
            from fraudstream.commands.dashboard import stop_dashboard

            stop_dashboard(board)
        signal.signal(signal.SIGINT, previous)
        _drain(services, timeout=10.0)
        server.should_exit = True
        thread.join(10)
    _summary(services, sim, started)
    services.close()
    console.print(
        f"the decisions stay in {db} until the next demo; to serve them again:\n"
        f"  {serve_demo_command(settings)}",
        soft_wrap=True,  # one line, whatever the terminal's width, to copy as it is
    )


def _drain(services: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while services.store.queue.pending("transactions") and time.monotonic() < deadline:
        time.sleep(0.1)


def _summary(services: Any, sim: Any, started: float) -> None:
    from datetime import UTC, datetime

    from rich.table import Table

    from fraudstream.events.transaction import FLAGGED

    stats = services.store.decisions.stats(datetime.fromtimestamp(started, UTC) - timedelta(seconds=1))
    ids = list(sim.truth)[: sim.sent]
    decided = services.store.decisions.get_many(ids)
    flagged = {t for t, rec in decided.items() if rec.decision in FLAGGED}
    fraud = {t for t in ids if sim.truth[t][0]}
    table = Table(title="demo summary", show_header=False)
    table.add_row("transactions sent", f"{sim.sent:,}")
    table.add_row("decided", f"{len(decided):,}")
    for decision, count in sorted(stats["by_decision"].items()):
        table.add_row(f"  {decision}", f"{count:,}")
    table.add_row("frauds (ground truth)", f"{len(fraud):,}")
    table.add_row(
        "caught (FLAG or BLOCK)",
        f"{len(fraud & flagged):,}" + (f" ({len(fraud & flagged) / len(fraud):.0%})" if fraud else ""),
    )
    table.add_row("false alarms", f"{len(flagged - fraud):,} of {len(set(ids) - fraud):,} legitimate")
    lat = stats.get("latency_ms") or {}
    table.add_row(
        "scoring latency p50 / p95 / p99",
        " / ".join(f"{lat.get(k) or 0:.1f} ms" for k in ("p50", "p95", "p99")),
    )
    console.print(table)
