"""Simulated traffic: stream a table of transactions into the system at a target rate, in the background.

Labels and the scenario column are stripped from what is sent (the system must not see ground
truth when it decides) and kept aside, so a summary can measure detection afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fraudstream.datasets.io import stream_frame
from fraudstream.events.transaction import Transaction

log = logging.getLogger(__name__)
GROUND_TRUTH = ("is_fraud", "label_time", "fraud_scenario")
GENERATOR = "generator"
#: How many transactions the generator makes per customer and day, on average (for size bounds).
TX_PER_CUSTOMER_PER_DAY = 1.5


def traffic(
    source: str, datasets_dir: Path, *, customers: int, days: float, seed: int, limit: int | None = None
) -> pd.DataFrame:
    """What to stream: freshly generated traffic (``source="generator"``) or a public dataset by name.

    Raises ``ValueError`` for a bad generator configuration, and the registry's errors for an unknown
    or missing dataset.
    """
    if source == GENERATOR:
        from fraudstream.datasets.generator import GeneratorConfig, generate

        return generate(GeneratorConfig(n_customers=customers, days=days, seed=seed))
    from fraudstream.datasets.registry import load_dataset

    return load_dataset(source, datasets_dir, limit=limit)


class Simulation:
    """Sends ``frame``'s transactions to ``sink`` in batches, paced to ``rate`` per second.

    ``frame`` may be a function that builds the frame: it is then called in the simulation's own
    thread, so whoever starts a simulation never waits for the traffic to be generated or loaded.
    :meth:`stop` is prompt: a pause between batches ends at once, and a frame still being built is
    dropped when it is ready. The frame is released when the simulation ends; its outcome stays.
    """

    def __init__(
        self,
        frame: pd.DataFrame | Callable[[], pd.DataFrame],
        rate: float,
        sink: Callable[[list[Transaction]], Any],
        *,
        limit: int | None = None,
        duration: float | None = None,
        batch_size: int = 50,
        name: str = "simulation",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.sink, self.duration, self.batch_size, self.name = (
            rate,
            sink,
            duration,
            batch_size,
            name,
        )
        self.limit = limit
        self._build = frame if callable(frame) else None
        self.frame: pd.DataFrame | None = None
        self.total: int | None = None
        self.truth: dict[str, tuple[bool, str | None]] = {}
        if not callable(frame):
            self._take(frame)
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _take(self, frame: pd.DataFrame) -> None:
        frame = frame.iloc[: self.limit] if self.limit else frame
        fraud = frame["is_fraud"].fillna(False).astype(bool).to_numpy()
        scenario = frame["fraud_scenario"].astype(object).where(frame["fraud_scenario"].notna(), None)
        self.truth = dict(
            zip(
                frame["transaction_id"].tolist(),
                zip(fraud.tolist(), scenario.tolist(), strict=True),
                strict=True,
            )
        )
        self.frame, self.total = frame, len(frame)

    def _pause(self, seconds: float) -> None:
        """Wait between batches, but no longer than until the simulation is stopped."""
        self._stop.wait(seconds)

    def _emit(self, records: list[dict[str, Any]]) -> None:
        if self._stop.is_set():
            raise _Stopped
        batch = [
            Transaction.model_validate({k: v for k, v in r.items() if k not in GROUND_TRUTH}) for r in records
        ]
        try:
            self.sink(batch)
            self.sent += len(batch)
        except Exception as exc:  # the sink is another component; keep going and report it
            self.errors += len(batch)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("simulation %s: sink failed: %s", self.name, self.last_error)

    def run(self) -> int:
        """Stream in this thread until done, stopped or past ``duration``; returns how many were sent."""
        self.started_at = time.time()
        try:
            if self._build is not None:
                self._take(self._build())
            if self.frame is not None and not self._stop.is_set():
                stream_frame(
                    self.frame,
                    rate=self.rate,
                    emit=self._emit,
                    batch_size=self.batch_size,
                    duration=self.duration,
                    sleep=self._pause,
                )
        except _Stopped:
            pass
        except Exception as exc:  # building the frame failed: say so in the status
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("simulation %s failed: %s", self.name, self.last_error)
        finally:
            self.finished_at = time.time()
            self.frame = None  # the outcome (truth, counts) is kept; the rows are not
        return self.sent

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"fraudstream-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        elapsed = ((self.finished_at or time.time()) - self.started_at) if self.started_at else 0.0
        return {
            "name": self.name,
            "running": self.running,
            "sent": self.sent,
            "total": self.total,
            "errors": self.errors,
            "last_error": self.last_error,
            "target_rate": self.rate,
            "actual_rate": round(self.sent / elapsed, 1) if elapsed > 0 else 0.0,
            "elapsed_s": round(elapsed, 2),
        }


class _Stopped(Exception):
    pass
