"""Runtime aggregates online: the feature state of the aggregates the rules in use declare, warmed from
stored history when a new rules version declares others, and swapped in between two batches.

:class:`LiveAggregates` stands between the rules a process follows (a file, or the versions saved in the
database) and its scorer. The scorer takes its rules from :meth:`LiveAggregates.rules` once per batch,
computes their aggregates in the features step (:meth:`LiveAggregates.compute`, the aggregates' own
:class:`~fraudstream.features.engine.FeatureEngine` over their own state, point-in-time like the model's
features), and the decider records the batch there in its record step (:meth:`LiveAggregates.record`),
so the aggregates see each batch's events in decision order, as the model's features do.

A new version whose aggregates differ (by :attr:`~fraudstream.rules.aggregates.Aggregates.digest`) does
not apply at once. Its aggregates get a state of their own, warmed in the background, while the rules
in use go on deciding:

1. when the version is first seen (inside the decider's lock and the feature state's turn, so every
   batch decided before is stored), the time is noted;
2. the state is filled with the stored transactions within the aggregates' retention and the fraud
   labels that arrived for them (``warm``: how a process warms its model's state at start), then with
   the transactions decided since the noted time (``catch_up``), which went on being decided meanwhile;
3. at the start of the next batch (again inside the lock and the turn), the transactions decided since
   the last catch-up are recorded, and the version swaps in with its state.

Recording is idempotent per transaction id, so a transaction read twice counts once, and every
transaction decided before the swap is in storage when the last catch-up reads it: none is missed.
The catch-ups read by decision time with a :data:`MARGIN` for clocks apart (the processes sharing a
Redis state) and for the batches in flight at a time noted outside the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.rules.aggregates import Aggregates
from fraudstream.rules.errors import RulesError
from fraudstream.state.base import FeatureState, StateError

log = logging.getLogger(__name__)

MARGIN: Final = timedelta(seconds=60)
"""How far before a noted time a catch-up reads decisions: more than clocks apart and batches in flight."""
RETRY_SECONDS: Final = 30.0
"""How long after a failed warm-up the same aggregates are warmed again."""
BUSY_SECONDS: Final = 600.0
"""How long a warm-up waits for a shared state another process is rebuilding."""

OpenState = Callable[[Aggregates, Callable[[FeatureState], int]], FeatureState]
"""Opens the state of some aggregates; the callable fills it from storage should a shared one be found
absent (``rebuild`` of :func:`~fraudstream.state.open_state`), and returns how many it recorded."""
Warm = Callable[[Any, FeatureState], int]
"""Records in a state, with an engine, the stored transactions within its retention and their fraud
labels; how many transactions."""
CatchUp = Callable[[Any, FeatureState, datetime], int]
"""Records in a state, with an engine, the stored transactions decided at or after a time (and the fraud
labels, when the engine's aggregates read them); how many transactions."""


@dataclass(eq=False)
class _Computed:
    """Aggregates and the state they are computed over."""

    aggregates: Aggregates
    state: FeatureState | None = None
    _closing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def digest(self) -> str:
        return self.aggregates.digest

    def close(self) -> None:
        """Release the state, once, whichever of the warm-up and the decider gives it up first."""
        with self._closing:
            state, self.state = self.state, None
        if state is not None:
            state.close()


@dataclass(eq=False)
class _Warming:
    """A version's aggregates being warmed: its rules apply once they are."""

    rules: Any
    computed: _Computed
    started: datetime
    done: threading.Event = field(default_factory=threading.Event)
    caught_up: datetime | None = None
    """When the last catch-up began: what was decided from ``caught_up - MARGIN`` on is read again."""
    count: int = 0
    error: str | None = None
    cancelled: bool = False


class LiveAggregates:
    """The rules in use with their aggregates computed online; see the module's notes.

    ``rules`` gives the newest rules (:meth:`~fraudstream.rules.reload.DatabaseRules.current`, or a
    file's); ``open_state`` opens a state for some aggregates; ``warm`` and ``catch_up`` read stored
    history into one (without them a state starts empty, as with ``open_services(warm=False)``). The
    first rules' aggregates are warmed at construction, before anything is decided. A new version's are
    warmed on a thread of its own (inline, under the caller's lock, without ``background``).

    :meth:`rules`, :meth:`compute`, :meth:`record` and :meth:`record_labels` are called by the decider
    inside its lock, which is what makes a swap fall between two batches.
    """

    def __init__(
        self,
        rules: Callable[[], Any],
        open_state: OpenState,
        *,
        warm: Warm | None = None,
        catch_up: CatchUp | None = None,
        background: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = rules
        self._open_state = open_state
        self._warm_from = warm
        self._catch_up = catch_up
        self._background = background
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._warming: _Warming | None = None
        self._failed: tuple[str, float] | None = None
        """The digest of the aggregates whose warm-up failed, and when to try again."""
        self.last_error: str | None = None
        """Why the newest rules do not apply yet (their aggregates could not be warmed), if so."""
        first = rules()
        self._newest: Any = first
        self._steady: Any = first
        """The newest rules when nothing is under way: then :meth:`rules` has nothing to do."""
        self._serving = first
        self._active: _Computed | None = None
        if first.aggregates is not None:
            computed = _Computed(first.aggregates)
            self._fill(computed)
            self._active = computed

    # --- the scorer's and the decider's --------------------------------------------------------------

    def rules(self) -> Any:
        """The newest rules whose aggregates are computed here: those of the newest version once its
        aggregates are warm, else the ones in use before it. Starts warming a new version's aggregates,
        and swaps them in when warm; one comparison when nothing changed and nothing is under way."""
        newest = self._source()
        if newest is self._steady:
            return self._serving
        with self._lock:
            self._settle()
            if self._failed is not None and self._monotonic() >= self._failed[1]:
                self._failed = None
                self._newest = None  # try the same version again
            if newest is not self._newest:
                self._newest = newest
                self._follow(newest)
                self._settle()
            quiet = self._warming is None and self._failed is None
            self._steady = newest if quiet else None
            return self._serving

    def compute(self, batch: TransactionBatch, aggregates: Aggregates) -> np.ndarray:
        """The values of ``aggregates`` (those of the rules :meth:`rules` gave) for every row of the
        batch, read from their state, recording nothing: rows × :attr:`Aggregates.names`."""
        active = self._active
        if active is None or active.state is None or active.digest != aggregates.digest:
            raise RulesError(
                "these rules declare aggregates that are not computed here: take the rules from "
                "LiveAggregates.rules"
            )
        return active.aggregates.engine.compute(batch, active.state)

    def record(self, batch: TransactionBatch) -> None:
        """The batch's events into the state of the aggregates in use (each transaction once)."""
        active = self._active
        if active is not None and active.state is not None:
            active.aggregates.engine.record(batch, active.state)

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> None:
        """Arrived labels into the state of the aggregates in use, when they read labels."""
        active = self._active
        if active is not None and active.state is not None and active.aggregates.reads_labels:
            active.state.record_labels(transaction_ids, label_times, is_fraud)

    def status(self) -> dict[str, Any]:
        """What is computed now and what is being warmed, for ``GET /v1/rules``."""
        active, warming = self._active, self._warming
        return {
            "names": [] if active is None else list(active.aggregates.names),
            "retention_seconds": None if active is None else active.aggregates.retention,
            "warming": None if warming is None else str(warming.rules.version),
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Stop any warm-up and release the states."""
        with self._lock:
            self._cancel()
            active, self._active = self._active, None
        if active is not None:
            active.close()

    # --- following the rules -------------------------------------------------------------------------

    def _follow(self, newest: Any) -> None:
        """Serve ``newest`` now when its aggregates are computed already (or it has none), else start
        warming them; called holding the lock."""
        wanted: Aggregates | None = newest.aggregates
        active = self._active
        if wanted is None or (active is not None and active.digest == wanted.digest):
            self._cancel()
            if wanted is None and active is not None:
                self._active = None
                active.close()
            self._serving = newest
            return
        warming = self._warming
        if warming is not None and warming.computed.digest == wanted.digest:
            warming.rules = newest  # the same aggregates: the newest rules over them apply once warm
            return
        self._cancel()
        if self._failed is not None and self._failed[0] == wanted.digest:
            return  # failed a moment ago: tried again once RETRY_SECONDS have passed
        warming = _Warming(newest, _Computed(wanted), self._clock())
        self._warming = warming
        log.info(
            "rules: version %s declares other aggregates (%s); version %s applies while they are computed "
            "from stored history",
            newest.version, ", ".join(wanted.names), self._serving.version,
        )  # fmt: skip
        if self._background:
            threading.Thread(
                target=self._warm, args=(warming,), name="aggregates-warm-up", daemon=True
            ).start()
        else:
            self._warm(warming)

    def _settle(self) -> None:
        """Swap in the aggregates warmed meanwhile, after one last catch-up; called holding the lock,
        which the decider holds around each batch: the swap falls between two batches."""
        warming = self._warming
        if warming is None or not warming.done.is_set():
            return
        self._warming = None
        computed = warming.computed
        if warming.error is None and warming.caught_up is not None and self._catch_up is not None:
            try:
                assert computed.state is not None
                warming.count += self._catch_up(
                    computed.aggregates.engine, computed.state, warming.caught_up - MARGIN
                )
            except Exception as exc:  # storage down: keep the rules in use, try again later
                warming.error = f"cannot catch up on the decisions made meanwhile: {exc}"
        if warming.error is not None:
            self._failed = (computed.digest, self._monotonic() + RETRY_SECONDS)
            self.last_error = f"rules version {warming.rules.version}: {warming.error}"
            log.warning("rules: keeping version %s: %s", self._serving.version, self.last_error)
            computed.close()
            return
        before, self._active = self._active, computed
        self._serving = warming.rules
        self.last_error = None
        log.info(
            "rules: now version %s, its aggregates warmed from %d stored transactions",
            warming.rules.version, warming.count,
        )  # fmt: skip
        if before is not None:
            before.close()

    def _cancel(self) -> None:
        """Give up the warm-up under way, if any (its thread stops at its next step and closes it)."""
        warming, self._warming = self._warming, None
        if warming is not None:
            warming.cancelled = True
            if warming.done.is_set():
                warming.computed.close()

    # --- warming -------------------------------------------------------------------------------------

    def _warm(self, warming: _Warming) -> None:
        """Fill a new version's state from stored history (see the module's notes); on a thread of its
        own, or inline without ``background``."""
        computed = warming.computed
        try:
            count = self._fill(computed, warming)
            if self._catch_up is not None and not warming.cancelled:
                assert computed.state is not None
                began = self._clock()
                count += self._catch_up(computed.aggregates.engine, computed.state, warming.started - MARGIN)
                warming.caught_up = began
            warming.count = count
        except Exception as exc:  # reported by the next batch, which keeps the rules in use
            log.exception("rules: warming the aggregates of version %s failed", warming.rules.version)
            warming.error = f"cannot warm its aggregates from stored history: {exc}"
        finally:
            warming.done.set()
            if warming.cancelled:
                computed.close()

    def _fill(self, computed: _Computed, warming: _Warming | None = None) -> int:
        """Open ``computed``'s state and record the stored history within its retention; how many
        transactions. A shared state found absent is rebuilt from storage by opening it; one another
        process is rebuilding is waited for (up to :data:`BUSY_SECONDS`)."""
        engine = computed.aggregates.engine
        rebuilt: list[int] = []

        def rebuild(state: FeatureState) -> int:
            count = self._warm_from(engine, state) if self._warm_from is not None else 0
            rebuilt.append(count)
            return count

        state = computed.state = self._open_state(computed.aggregates, rebuild)
        deadline = self._monotonic() + BUSY_SECONDS
        while True:
            try:
                state.recorded(np.empty(0, dtype=object))  # a shared state is read (or rebuilt) here
                break
            except StateError:
                if (warming is not None and warming.cancelled) or self._monotonic() >= deadline:
                    raise
                time.sleep(1.0)
        if rebuilt:
            return rebuilt[0]
        return self._warm_from(engine, state) if self._warm_from is not None else 0


__all__ = ["MARGIN", "LiveAggregates"]
