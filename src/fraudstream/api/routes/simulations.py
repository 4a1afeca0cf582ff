"""``/v1/simulations``: stream simulated traffic into the outbox, for demos and load tests.

The traffic enters exactly where real clients' does (:meth:`Store.accept`, as ``POST
/v1/transactions``), so what the simulation shows — decisions, throughput, lag — is the real path.
One simulation runs at a time per API process.
"""

from __future__ import annotations

import threading
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from fraudstream.api.deps import SettingsDep, StoreDep
from fraudstream.api.schemas import SimulationIn, SimulationOut
from fraudstream.config import Settings
from fraudstream.datasets.registry import DatasetNotFoundError, UnknownDatasetError
from fraudstream.datasets.simulate import GENERATOR, Simulation, traffic

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


def build_frame(spec: SimulationIn, settings: Settings) -> pd.DataFrame:
    """The transactions to send: freshly generated, or a public dataset by name."""
    try:
        return traffic(
            spec.source, settings.datasets_dir,
            customers=spec.customers, days=spec.days, seed=spec.seed, limit=spec.limit,
        )  # fmt: skip
    except UnknownDatasetError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{error}; or use source={GENERATOR!r}"
        ) from None
    except DatasetNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except ValueError as error:  # a generator configuration out of bounds
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.get("", response_model=SimulationOut)
async def simulation_status(slot: SlotDep) -> SimulationOut:
    """The current (or last) simulation's progress; ``{"running": false}`` when none was started."""
    return slot.status()


@router.post(
    "",
    response_model=SimulationOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {}, 409: {"description": "a simulation is already running"}, 422: {}},
)
def control(
    spec: SimulationIn, slot: SlotDep, store: StoreDep, settings: SettingsDep, response: Response
) -> SimulationOut:
    """``start`` a simulation: 202 and its status (409 while one runs). ``stop`` it: 200 and its final
    status (404 if none was started; stopping a finished one is harmless).

    A plain ``def``: generating or loading the frame takes a moment and must not block the loop.
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
        frame = build_frame(spec, settings)
        simulation = Simulation(
            frame, spec.rate, store.accept, limit=spec.limit, duration=spec.duration, name=spec.source
        )
        simulation.start()
        slot.current, slot.source = simulation, spec.source
        return slot.status()
