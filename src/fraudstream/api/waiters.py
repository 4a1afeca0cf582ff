"""Requests waiting for transactions to be decided (``?wait=``), woken by the decisions themselves.

A waiting request asks storage once, then sleeps until this process's decider stores a decision for
one of its ids (it observes every batch of new decisions), or until a re-check falls due: decisions
made by another process (a separate worker) reach the waiter through storage, asked at growing
intervals from :data:`FIRST_CHECK` to :data:`LAST_CHECK` seconds. Fifty waiters then cost storage a few
questions a second, not one every 20 ms each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fraudstream.events.decision import DecisionColumns

FIRST_CHECK = 0.05
"""Seconds before a waiter first asks storage again (decisions made by another process)."""
LAST_CHECK = 1.0
"""The longest a waiter goes without asking storage again; the interval doubles up to it."""


class Waiters:
    """The requests of one app waiting for decisions; :meth:`observe` is the decider's observer."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def observe(self, decided: DecisionColumns) -> None:
        """Wake the requests waiting for any of these new decisions (called on the deciding thread)."""
        loop = self._loop
        if loop is not None and self._waiting:
            loop.call_soon_threadsafe(self._wake, decided.transaction_id.tolist())

    def _wake(self, ids: Iterable[str]) -> None:
        for tx_id in ids:
            for event in self._waiting.pop(tx_id, ()):
                event.set()

    async def sleep(self, ids: Iterable[str], seconds: float) -> None:
        """Return after ``seconds``, or as soon as a decision for one of ``ids`` is stored here."""
        self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        wanted = list(ids)
        for tx_id in wanted:
            self._waiting.setdefault(tx_id, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            for tx_id in wanted:
                events = self._waiting.get(tx_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[tx_id]
