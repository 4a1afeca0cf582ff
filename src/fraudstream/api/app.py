"""The FastAPI application: ``create_app(settings)`` wires services, routers, errors and metrics.

Serve it with uvicorn (``uvicorn.run(create_app(Settings()))``); tests build as many independent apps
as they like, each with its own services, metrics registry and (optionally) embedded worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from fraudstream import __version__
from fraudstream._gc import freeze_startup_objects, paused_gc
from fraudstream.api import docs, openapi
from fraudstream.api.batcher import ScoreBatcher
from fraudstream.api.bodies import add_component_schemas
from fraudstream.api.errors import DeadlineMiddleware, install_error_handlers
from fraudstream.api.keyring import Keyring
from fraudstream.api.limits import RateLimitMiddleware, RateLimits
from fraudstream.api.metrics import ApiMetrics, RequestMetricsMiddleware
from fraudstream.api.routes import include_routes
from fraudstream.api.routes.simulations import SimulationSlot
from fraudstream.api.waiters import Waiters
from fraudstream.brokers import publishes_results
from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Label, Transaction
from fraudstream.monitoring.drift import watch
from fraudstream.monitoring.metrics import DriftCollector, GuardCollector, HoldCollector, ParityCollector
from fraudstream.pipeline.decider import Decider
from fraudstream.registry import watch_model
from fraudstream.runtime import Services, alerts_for, guard_rules, open_services
from fraudstream.webhooks import open_webhooks
from fraudstream.worker.holds import HoldSweep
from fraudstream.worker.worker import DEAD_LETTERS, RESULTS, Worker

log = logging.getLogger(__name__)

DESCRIPTION = """\
Real-time fraud decisions (APPROVE / FLAG / CHALLENGE / HOLD / BLOCK) from point-in-time features, trained
models and rules.

* `POST /v1/score` decides one transaction synchronously.
* `POST /v1/transactions` queues transactions durably for the worker; `GET /v1/transactions/{id}?wait=`
  returns the decision when it is made.
* `POST /v1/labels` feeds fraud outcomes back into the features; `POST /v1/challenges/{id}` posts the
  result of a CHALLENGE's step-up authentication, a label source too.
* `GET /v1/holds` lists the payments decided HOLD: a case's verdict releases or rejects them.

Send the API key as `X-API-Key` or `Authorization: Bearer` when keys are set (`FRAUD_API_KEYS`,
`FRAUD_ADMIN_KEYS`, `fraudstream keys create`); each route needs a role: ingest, analyst or admin.
"""
#: After a crash of the embedded worker's loop (e.g. the database went away), wait this long and resume.
WORKER_RESTART_DELAY = 1.0
WORKER_JOIN_TIMEOUT = 30.0
#: Say why the start-up takes long when the warm-up has not finished after this many seconds.
SLOW_WARM_UP = 3.0
#: Transactions in the warm-up's batch (see :func:`warm_up`).
WARM_UP_ROWS = 4


def warm_up(decider: Decider) -> None:
    """Decide throwaway transactions without storing or recording them, so that the first request does
    not pay for loading the compiled kernels (about half a second once per process; on a fresh
    install, compiling them takes 20-30 s). Every batch size takes the same kernels."""
    now = datetime.now(UTC)
    probes = [
        Transaction(transaction_id=f"warm-up-{i}", timestamp=now, customer_id=f"warm-up-{i}", amount=1.0)
        for i in range(WARM_UP_ROWS)
    ]
    decider.score(TransactionBatch.from_transactions(probes))


def _supervise(worker: Worker) -> None:
    """Run the worker until it is stopped, resuming after unexpected errors instead of dying silently."""
    while not worker.stopping.is_set():
        try:
            worker.run()
        except Exception:
            log.exception("embedded worker failed; resuming in %.0f s", WORKER_RESTART_DELAY)
            worker.stopping.wait(WORKER_RESTART_DELAY)


def _start_worker(app: FastAPI, services: Services, settings: Settings, metrics: ApiMetrics) -> None:
    results = publishes_results(settings.broker_url)  # decisions and dead letters to redis:// or kafka://
    worker = Worker(
        services.broker,
        services.decider,
        services.store,
        batch_size=settings.batch_size,
        max_wait=settings.max_wait,
        on_scored=metrics.on_worker_batch,
        results_topic=RESULTS if results else None,
        dead_letters_topic=DEAD_LETTERS if results else None,
        max_deliveries=settings.max_deliveries,
        around_batch=paused_gc,
        intake=services.intake,
    )
    thread = threading.Thread(target=_supervise, args=(worker,), name="fraudstream-worker", daemon=True)
    app.state.worker, app.state.worker_thread = worker, thread
    thread.start()


def _stop_worker(app: FastAPI) -> None:
    worker, thread = app.state.worker, app.state.worker_thread
    if worker is None or thread is None:
        return
    worker.stop()
    started = time.monotonic()
    thread.join(WORKER_JOIN_TIMEOUT)
    if thread.is_alive():
        log.warning("embedded worker did not stop within %.0f s", time.monotonic() - started)


def create_app(settings: Settings, services: Services | None = None, *, run_worker: bool = False) -> FastAPI:
    """The API for ``settings``; opens its own services at start-up unless ``services`` are given.

    Services passed in belong to the caller and are not closed at shutdown; services the app opened
    are. With ``run_worker`` a :class:`Worker` runs in a daemon thread of this process (the embedded
    demo: one process serves the API and decides queued transactions), stopped at shutdown.
    """
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        running = open_services(settings) if services is None else services
        app.state.keyring.open(running.store.db)  # the stored keys
        if not app.state.keyring.enabled():
            log.warning("API keys are not set: anyone who can reach this port can use the API")
        slow = threading.Timer(SLOW_WARM_UP, log.warning, (
            "warming up: the first start after an install compiles the feature kernels (up to a minute)",
        ))  # fmt: skip
        slow.start()
        try:
            warm_up(running.decider)
        finally:
            slow.cancel()
        alerts = app.state.alerts = alerts_for(running)  # stores alerts; delivers them if channels are set
        app.state.drift = watch(running.decider, settings, alerts.raise_alerts)  # GET /v1/drift, /metrics
        app.state.rule_guard = guard_rules(running, alerts.raise_alerts)  # GET /v1/rules/guard
        app.state.webhooks = open_webhooks(settings, running.store)  # event webhooks, in the background
        app.state.batcher = ScoreBatcher(
            running.decider, metrics, max_wait=settings.score_max_wait, around_batch=paused_gc
        )
        running.decider.add_observer(app.state.waiters.observe)  # ?wait= answers as decisions are stored
        app.state.services = running
        app.state.model_watcher = watch_model(running, settings)  # a promotion swaps in without a restart
        app.state.hold_sweep = HoldSweep(running.store, settings).start()  # timed-out holds get the default
        if run_worker:
            _start_worker(app, running, settings, metrics)
        freeze_startup_objects()
        try:
            yield
        finally:
            if app.state.model_watcher is not None:
                app.state.model_watcher.stop()
                app.state.model_watcher = None
            app.state.simulations.stop()
            app.state.hold_sweep.stop()
            await app.state.batcher.stop()
            _stop_worker(app)
            app.state.alerts.close()
            app.state.webhooks.close()
            app.state.services = None
            app.state.keyring.close()
            if owned:
                running.close()

    app = FastAPI(
        title="fraudstream", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served by fraudstream.api.docs, with assets of its own
    )  # fmt: skip
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    app.state.batcher = None
    app.state.worker = None
    app.state.alerts = None
    app.state.webhooks = None
    app.state.drift = None
    app.state.rule_guard = None
    app.state.model_watcher = None
    app.state.hold_sweep = None
    metrics.registry.register(DriftCollector(lambda: app.state.drift))
    metrics.registry.register(
        ParityCollector(lambda: None if app.state.services is None else app.state.services.store.parity)
    )
    metrics.registry.register(
        HoldCollector(lambda: None if app.state.services is None else app.state.services.store.holds)
    )
    metrics.registry.register(
        GuardCollector(lambda: None if app.state.services is None else app.state.services.guards)
    )
    app.state.worker_thread = None
    app.state.simulations = SimulationSlot()
    app.state.waiters = Waiters()
    app.state.keyring = Keyring(settings)
    app.state.limits = RateLimits(settings, app.state.keyring) if settings.rate_limits else None
    include_routes(app)
    docs.install(app)
    install_error_handlers(app, settings.max_body_bytes)
    if app.state.limits is not None:  # outside the body limit: a refused client's body is never read
        app.add_middleware(RateLimitMiddleware, limits=app.state.limits)
    app.add_middleware(DeadlineMiddleware, seconds=settings.request_timeout)  # a hung database holds no one
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: sees 413s and 500s too
    add_component_schemas(app, Transaction, Label)
    openapi.install(app)
    return app
