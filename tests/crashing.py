"""Run a ``fraudstream`` command that kills itself with SIGKILL at a boundary of the decider's order.

    python -m tests.crashing stored 3 worker --burst     # the 3rd batch: stored, not yet recorded
    python -m tests.crashing recorded 2 serve --port 0   # the 2nd batch: recorded, not handed over

``stored``: right after the batch's decisions are committed, before the feature state records them.
``recorded``: right after the state recorded them, before anything is handed over (no answer sent, no
message published or acknowledged). The process is killed as a crash would kill it: nothing else of it
runs. The boundaries are reached through the decider's public seams (its ledger, its observers).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

BOUNDARIES = ("stored", "recorded")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _CrashingLedger:
    """The decider's ledger, killing the process after its ``nth`` save has committed."""

    def __init__(self, ledger: Any, nth: int) -> None:
        self.ledger, self.nth, self.saves = ledger, nth, 0

    def known(self, ids: list[str]) -> Any:
        return self.ledger.known(ids)

    def decisions(self, ids: list[str]) -> Any:
        return self.ledger.decisions(ids)

    def save(self, decided: Any, bodies: Any, clashes: set[str]) -> list[str]:
        stored = self.ledger.save(decided, bodies, clashes)
        self.saves += 1
        if self.saves == self.nth:
            die()
        return list(stored)


def crashing(boundary: str, nth: int) -> Any:
    """``open_services``, with its decider set to kill the process at ``boundary`` of its ``nth`` batch
    that decides something."""
    from fraudstream import runtime

    real = runtime.open_services

    def open_services(*args: Any, **kwargs: Any) -> Any:
        services = real(*args, **kwargs)
        decider = services.decider
        if boundary == "stored":
            decider.ledger = _CrashingLedger(decider.ledger, nth)
        else:
            seen = [0]

            def observe(_: Any) -> None:  # observers run after recording, before the hand-over
                seen[0] += 1
                if seen[0] == nth:
                    die()

            decider.add_observer(observe)
        return services

    return open_services


def main(argv: list[str]) -> None:
    boundary, nth, command = argv[0], int(argv[1]), argv[2:]
    if boundary not in BOUNDARIES:
        raise SystemExit(f"boundary must be one of {', '.join(BOUNDARIES)}, not {boundary!r}")
    from fraudstream import runtime
    from fraudstream.api import app as api_app

    patched = crashing(boundary, nth)
    runtime.open_services = patched  # type: ignore[assignment]
    api_app.open_services = patched  # type: ignore[attr-defined]
    from fraudstream.cli import app

    app(command, prog_name="fraudstream")


if __name__ == "__main__":
    main(sys.argv[1:])
