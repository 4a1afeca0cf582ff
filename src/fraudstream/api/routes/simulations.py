"""``/v1/simulations``: stream simulated traffic into the outbox, for demos and load tests.

The traffic enters exactly where real clients' does (the queue's
:meth:`~fraudstream.storage.outbox.QueueRepository.accept`, as ``POST /v1/transactions``), so what
the simulation shows — decisions, throughput, lag — is the real path.
One simulation runs at a time per API process. What one request may generate or load is bounded
(``FRAUD_SIMULATION_MAX_ROWS``), and the rows are built in the simulation's own thread: starting
answers at once, and scoring does not wait for a large frame being generated in a request.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError

from fraudstream.api.deps import SettingsDep, StoreDep
from fraudstream.api.schemas import SimulationIn, SimulationOut
from fraudstream.config import Settings
from fraudstream.datasets.generator import GeneratorConfig
from fraudstream.datasets.registry import DatasetNotFoundError, UnknownDatasetError, dataset_paths
from fraudstream.datasets.simulate import GENERATOR, TX_PER_CUSTOMER_PER_DAY, Simulation, traffic

router = APIRouter(prefix="/v1/simulations", tags=["simulations"])


class SimulationSlot:
    """The app's one simulation, the source it came from, and a lock so two starts cannot race."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: Simulation | None = None
        self.source: str | None = None

    def status(self) -> SimulationOut:
        if self.current is None:
            return SimulationOut(running=False)
        return SimulationOut(source=self.source, **self.current.status())

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()


async def get_slot(request: Request) -> SimulationSlot:
    slot: SimulationSlot = request.app.state.simulations
    return slot


SlotDep = Annotated[SimulationSlot, Depends(get_slot)]


def _invalid(field: str, message: str, value: object) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}]
    )


def frame_builder(spec: SimulationIn, settings: Settings) -> Callable[[], pd.DataFrame]:
    """A function building the transactions to send (freshly generated, or a public dataset by name),
    after checking now what can be checked cheaply: the source exists and the size is within bounds."""
    most = settings.simulation_max_rows
    if spec.source == GENERATOR:
        expected = round(spec.customers * spec.days * TX_PER_CUSTOMER_PER_DAY)
        if expected > most:
            raise _invalid(
                "customers",
                f"{spec.customers} customers over {spec.days:g} days make about {expected:,} transactions; "
                f"at most {most:,} (FRAUD_SIMULATION_MAX_ROWS): fewer customers or days",
                spec.customers,
            )
        try:
            GeneratorConfig(n_customers=spec.customers, days=spec.days, seed=spec.seed)
        except ValueError as error:  # a generator configuration out of bounds
            raise _invalid("customers", str(error), spec.customers) from None
    else:
        try:
            dataset_paths(spec.source, settings.datasets_dir)
        except UnknownDatasetError as error:
            raise _invalid("source", f"{error}; or use source={GENERATOR!r}", spec.source) from None
        except DatasetNotFoundError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    limit = min(spec.limit or most, most)
    build = partial(
        traffic, spec.source, settings.datasets_dir,
        customers=spec.customers, days=spec.days, seed=spec.seed, limit=limit,
    )  # fmt: skip
    return _fresh_ids(build) if spec.source == GENERATOR else build


def _fresh_ids(build: Callable[[], pd.DataFrame]) -> Callable[[], pd.DataFrame]:
    """``build`` with each transaction id prefixed by a tag of this run: the generator numbers its
    transactions from 1, and an id names one transaction, so a second run with other settings would
    otherwise clash with the first (409) instead of sending new traffic."""
    tag = f"sim{uuid.uuid4().hex[:8]}-"

    def fresh() -> pd.DataFrame:
        frame = build()
        frame["transaction_id"] = tag + frame["transaction_id"].astype(str)
        return frame

    return fresh


@router.get("", response_model=SimulationOut)
async def simulation_status(slot: SlotDep) -> SimulationOut:
    """The current (or last) simulation's progress; ``{"running": false}`` when none was started."""
    return slot.status()


@router.post(
    "",
    response_model=SimulationOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": SimulationOut, "description": "stopped: the simulation's final status"},
        404: {"description": "stop: none was started; start: the dataset's files are missing"},
        409: {"description": "a simulation is already running"},
    },
)
def control(
    spec: SimulationIn, slot: SlotDep, store: StoreDep, settings: SettingsDep, response: Response
) -> SimulationOut:
    """``start`` a simulation: 202 and its status (409 while one runs); its rows are generated or
    loaded in the background (``total`` is null until they are ready). ``stop`` it: 200 and its status
    (404 if none was started; stopping a finished one is harmless).

    The generator makes about 1.5 transactions per customer and day; ``customers × days × 1.5`` (and a
    dataset's ``limit``) may not exceed ``FRAUD_SIMULATION_MAX_ROWS``.
    """
    with slot.lock:
        if spec.action == "stop":
            if slot.current is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no simulation has been started")
            slot.current.stop()
            response.status_code = status.HTTP_200_OK
            return slot.status()
        if slot.current is not None and slot.current.running:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "a simulation is already running: stop it first (action=stop)"
            )
        build = frame_builder(spec, settings)
        simulation = Simulation(
            build, spec.rate, store.queue.accept, limit=spec.limit, duration=spec.duration, name=spec.source
        )
        simulation.start()
        slot.current, slot.source = simulation, spec.source
        return slot.status()
