"""Open everything the settings name — store, feature state, model, rules, scorer, broker — in one place.

The API, the worker and the CLI all start from :func:`open_services`, so they cannot disagree on
how a URL is interpreted. Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudstream._urls import split_prefix
from fraudstream.alerts import AlertDispatcher, Retry, alerting_rules, open_dispatcher
from fraudstream.brokers import Broker, open_broker
from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features.engine import FeatureEngine
from fraudstream.features.plan import FeatureSet
from fraudstream.models.bundle import ModelBundle
from fraudstream.monitoring.rule_guard import RuleGuard, watch_rules
from fraudstream.pipeline.aggregates import LiveAggregates
from fraudstream.pipeline.decider import Decider, StoreLedger
from fraudstream.pipeline.intake import Intake
from fraudstream.pipeline.scorer import Scorer
from fraudstream.registry import ModelSource, load_challenger, load_model
from fraudstream.rules.aggregates import Aggregates
from fraudstream.rules.guard import GuardedRules, LiveGuards
from fraudstream.rules.loader import load_rules
from fraudstream.rules.names import default_known_names
from fraudstream.rules.packaged import packaged_rules_path
from fraudstream.rules.reload import DatabaseRules, ReloadingRules
from fraudstream.rules.snoozes import LiveSnoozes, SnoozedRules
from fraudstream.state import STATE_PREFIX, FeatureState, MemoryFeatureState, open_state
from fraudstream.storage import Store, open_store
from fraudstream.webhooks import open_webhooks

if TYPE_CHECKING:
    from fraudstream.worker import Worker

WARM_BATCH = 20_000
LiveRules = ReloadingRules | DatabaseRules
"""The rules a running process follows (docs/decisions/0028-rules-versions-shadow-and-backtests.md)."""


def open_rules(settings: Settings, store: Store, feature_set: FeatureSet) -> LiveRules:
    """``FRAUD_RULES_SOURCE=file``: FRAUD_RULES_PATH (else the packaged rules of the model's preset),
    followed as it changes. ``database``: the newest saved version, polled every
    FRAUD_RULES_POLL_SECONDS; when none is saved yet, that file's text is stored first as version 1
    (by whichever process starts first).

    Of the packaged rules, those reading a feature ``feature_set`` lacks (a spec of one's own) are
    left out, and one line says which apply and why the others do not; rules of your own must name
    only features the model has."""
    path = settings.rules_path or packaged_rules_path(feature_set)
    known = default_known_names(feature_set)
    skip_unknown = settings.rules_path is None
    if settings.rules_source == "file":
        return ReloadingRules(path, known, skip_unknown=skip_unknown)
    repository = store.rules
    if repository.newest_version() is None:
        load_rules(path, known, skip_unknown=skip_unknown)  # a broken seed is refused before it is stored
        repository.seed(path.read_text(encoding="utf-8"), created_by=f"seed:{path.name}")
    return DatabaseRules(
        repository, known, check_interval=settings.rules_poll_seconds, skip_unknown=skip_unknown
    )


@dataclass
class Services:
    """The long-lived parts of a running fraudstream process."""

    settings: Settings
    store: Store
    state: FeatureState
    rules: LiveRules
    scorer: Scorer
    decider: Decider
    """Decides every batch of the process, whichever entry point it came in by (see its module)."""
    broker: Broker
    intake: Intake
    """Reads live events: canonical, or the team's own through the model's mapping."""
    #: Where the bundle came from (a file, or a registry version); ``None`` for a bundle passed in.
    model_source: ModelSource | None = None
    #: Where the challenger scored in shadow came from (FRAUD_CHALLENGER_URI); ``None`` without one.
    challenger_source: ModelSource | None = None
    #: The analysts' rule snoozes the scorer honours, read again every FRAUD_RULES_POLL_SECONDS.
    snoozes: LiveSnoozes | None = None
    #: The rules the rule guard moved to shadow, which the scorer applies; read again every
    #: FRAUD_RULES_POLL_SECONDS.
    guards: LiveGuards | None = None
    #: The runtime aggregates the rules in use declare, computed online (docs/rules.md).
    aggregates: LiveAggregates | None = None

    def close(self) -> None:
        if self.aggregates is not None:
            self.aggregates.close()
        self.broker.close()
        self.state.close()
        self.store.close()


def warm_state(store: Store, engine: FeatureEngine, state: FeatureState) -> int:
    """Rebuild feature state from stored decisions within the retention window.

    The in-memory state dies with its process, and a Redis state with a Redis that lost its memory;
    replaying the decided transactions (and the fraud labels that had arrived) restores exactly the
    history a restarted worker needs. The window ends at the newest decided event time, not the wall
    clock, so replayed historical data warms too.
    """
    newest = store.decisions.newest_decided_timestamp()
    if newest is None:
        return 0
    since = newest - timedelta(seconds=engine.feature_set.retention)
    payloads = store.decisions.decided_payloads(since)
    for lo in range(0, len(payloads), WARM_BATCH):
        chunk = [Transaction.model_validate(p) for p in payloads[lo : lo + WARM_BATCH]]
        engine.record(TransactionBatch.from_transactions(chunk), state)
    labels = store.labels.fraud_since(since)
    if labels:
        ids = np.array([t for t, _ in labels], dtype=object)
        times = np.array([lt.timestamp() for _, lt in labels])
        state.record_labels(ids, times, np.ones(len(labels), dtype=bool))
    return len(payloads)


def catch_up_state(store: Store, engine: FeatureEngine, state: FeatureState, since: datetime) -> int:
    """Record in ``state`` the stored transactions decided at or after ``since``, and the fraud labels
    within the retention when the engine's features read labels: what a state warmed a while ago lacks
    (recording is idempotent, so what it holds already is skipped)."""
    payloads = store.decisions.payloads_decided_since(since)
    for lo in range(0, len(payloads), WARM_BATCH):
        chunk = [Transaction.model_validate(p) for p in payloads[lo : lo + WARM_BATCH]]
        engine.record(TransactionBatch.from_transactions(chunk), state)
    newest = store.decisions.newest_decided_timestamp()
    if newest is not None and any(group.labels for group in engine.feature_set.groups):
        labels = store.labels.fraud_since(newest - timedelta(seconds=engine.feature_set.retention))
        if labels:
            ids = np.array([t for t, _ in labels], dtype=object)
            times = np.array([lt.timestamp() for _, lt in labels])
            state.record_labels(ids, times, np.ones(len(labels), dtype=bool))
    return len(payloads)


def open_aggregates(
    settings: Settings, store: Store, rules: Callable[[], Any], *, warm: bool
) -> LiveAggregates:
    """The runtime aggregates of ``rules`` (docs/rules.md), each declaration's state where FRAUD_STATE_URL
    says: in memory, or in its Redis under the model state's prefix and ``agg:<digest>:``. With ``warm``,
    a state is filled from storage before its rules apply (and a shared one found absent is rebuilt)."""
    plain, prefix = split_prefix(settings.state_url)

    def opened(aggregates: Aggregates, rebuild: Callable[[FeatureState], int]) -> FeatureState:
        return open_state(
            plain,
            retention=aggregates.retention,
            prefix=f"{prefix or STATE_PREFIX}agg:{aggregates.digest}:",
            schema=aggregates.engine.schema,
            rebuild=rebuild if warm else None,
        )

    return LiveAggregates(
        rules,
        opened,
        warm=(lambda engine, state: warm_state(store, engine, state)) if warm else None,
        catch_up=(lambda engine, state, since: catch_up_state(store, engine, state, since)) if warm else None,
    )


def alerts_for(services: Services, *, retry: Retry | None = None) -> AlertDispatcher:
    """:func:`open_dispatcher` for a running process (its settings, its store, its current rules), which
    the process's decider hands its new decisions that can raise an alert from now on."""
    rules = services.rules
    dispatcher = open_dispatcher(
        services.settings, services.store, lambda: alerting_rules(rules.current()), retry=retry
    )
    services.decider.on_decided = dispatcher.submit
    return dispatcher


def guard_rules(services: Services, on_alerts: Callable[[list[Alert]], None] | None) -> RuleGuard:
    """The rule guard of a running process (FRAUD_RULE_GUARD_*): it checks the rules in use after the
    batches the process decides, and a rule it moves to shadow is applied here at once and raises an
    alert through ``on_alerts`` (see :mod:`fraudstream.monitoring.rule_guard`)."""
    guards = services.guards
    return watch_rules(
        services.decider,
        services.store.rule_guard,
        services.rules.current,
        services.settings,
        on_alerts=on_alerts,
        on_trip=None if guards is None else guards.refresh,
    )


def settings_broker(settings: Settings, store: Store) -> Broker:
    """The broker ``settings`` name, with their leases, group and stream length."""
    return open_broker(
        settings.broker_url,
        store,
        lease_seconds=settings.lease_seconds,
        group=settings.consumer_group,
        claim_idle_seconds=settings.claim_idle_seconds,
        dead_after_seconds=settings.dead_after_seconds,
        maxlen=settings.stream_maxlen,
        publish_timeout=settings.publish_timeout,
        schema_registry=settings.schema_registry_url,
    )


def open_services(settings: Settings, *, bundle: ModelBundle | None = None, warm: bool = True) -> Services:
    """Connect to (or create) everything; raises the area's own error with a message saying what to do."""
    store = open_store(settings.db_url)
    try:
        return _open_with_store(settings, store, bundle, warm)
    except BaseException:  # a model, state or broker that cannot be opened: release the database too
        store.close()
        raise


def _open_with_store(settings: Settings, store: Store, bundle: ModelBundle | None, warm: bool) -> Services:
    store.migrate()
    source = None
    if bundle is None:  # FRAUD_MODEL_URI (models:/NAME@ALIAS or a path), else FRAUD_MODEL_PATH
        bundle, source = load_model(settings)
    engine = FeatureEngine(bundle.feature_set())

    def rebuild(state: FeatureState) -> int:  # a Redis state found absent, lost or never built
        return warm_state(store, engine, state)

    retention = engine.feature_set.retention
    state = open_state(
        settings.state_url, retention=retention, schema=engine.schema, rebuild=rebuild if warm else None
    )
    rules = open_rules(settings, store, engine.feature_set)  # FRAUD_RULES_SOURCE: the file or the database
    challenger, challenger_source = load_challenger(settings) if settings.challenger_uri else (None, None)
    snoozes = LiveSnoozes(store.snoozes, check_interval=settings.rules_poll_seconds)
    guards = LiveGuards(store.rule_guard, check_interval=settings.rules_poll_seconds)
    aggregates = open_aggregates(settings, store, rules.current, warm=warm)
    scorer = Scorer(
        bundle,
        state,
        SnoozedRules(GuardedRules(aggregates.rules, guards.current), snoozes.current),
        engine,
        challenger=challenger,
        challenger_share=settings.challenger_share,
        bands=settings.score_bands(),
        aggregates=aggregates,
    )
    broker = settings_broker(settings, store)
    if warm and isinstance(state, MemoryFeatureState):
        warm_state(store, engine, state)
    decider = Decider(scorer, StoreLedger(store))
    intake = Intake(lambda: scorer.bundle, settings.input_mapping)
    return Services(
        settings, store, state, rules, scorer, decider, broker, intake, source, challenger_source, snoozes,
        guards, aggregates,
    )  # fmt: skip


@contextmanager
def open_worker(
    settings: Settings,
    say: Callable[[str], None],
    *,
    broker: Callable[[Broker], Broker] | None = None,
    **options: Any,
) -> Iterator[Worker]:
    """A worker over the services the settings name, set up as every long-running consumer of the
    transactions topic runs one (``fraudstream worker``, the Spark streaming job), so they cannot
    drift apart: stale kernels rebuilt and run on FRAUD_WORKER_THREADS threads, the data folder made,
    alerts stored (and delivered when a channel is configured) for its decisions and for drift, event
    webhooks sent, a registry alias followed (``say`` hears a swap), timed-out holds swept
    (:mod:`.worker.holds`), the collector paused around each batch.

    ``broker`` wraps the services' broker (the Spark job publishes through it, but reads through
    Spark); ``options`` go to :class:`~fraudstream.worker.Worker`. Everything is closed on exit.
    """
    from fraudstream._gc import paused_gc
    from fraudstream._kernels import limit_kernel_threads
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.monitoring.drift import watch
    from fraudstream.registry import watch_model
    from fraudstream.worker import Worker
    from fraudstream.worker.holds import HoldSweep

    refresh_stale_kernels()
    limit_kernel_threads(settings.worker_threads)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = open_services(settings)
    alerts = alerts_for(services)  # alerts are stored, and delivered when a channel is configured
    webhooks = open_webhooks(settings, services.store)
    follower = None
    sweep = HoldSweep(services.store, settings).start()  # timed-out holds get FRAUD_HOLD_DEFAULT
    try:
        watch(services.decider, settings, alerts.raise_alerts)  # drift alerts from this worker's batches
        guard_rules(services, alerts.raise_alerts)  # a rule firing far above its backtested rate: shadow
        follower = watch_model(services, settings, say)
        yield Worker(
            services.broker if broker is None else broker(services.broker),
            services.decider,
            services.store,
            max_deliveries=settings.max_deliveries,
            around_batch=paused_gc,
            intake=services.intake,
            **options,
        )
    finally:
        sweep.stop()
        if follower is not None:
            follower.stop()
        alerts.close()
        webhooks.close()
        services.close()
