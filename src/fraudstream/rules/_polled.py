"""A value kept from a database that several processes change, read again when its stamp changes; and
rules combined with such a value, built again only when either changed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")
_UNREAD: Final = object()


class Unusable(Exception):
    """Raised by a :class:`Polled` value's ``read``: the value stored under this stamp cannot be used
    (it does not compile here, say). The value in use is kept, and the stamp is not read again: the
    problem is reported once, until the next change."""


class Polled(Generic[T]):
    """``read(stamp)`` kept in memory, read again when ``stamp()`` (one cheap query that changes with
    every change of the stored value) has changed; ``read`` is given the stamp it reads under.

    :meth:`current` looks at the stamp at most every ``check_interval`` seconds (by ``clock``). With
    ``background`` (the default) the look runs on a short-lived thread and :meth:`current` answers with
    the value in use meanwhile, so a caller on a hot path never waits on the database. A failed read
    keeps the value in use and is kept in :attr:`last_error` (logged once, as ``what``): a storage
    failure is tried again at the next look, an :class:`Unusable` value only after the next change.
    ``initial_stamp`` is the stamp ``initial`` was read under, when known, so it is not read twice.
    :meth:`refresh` reads now: the process that made a change uses it at once. Safe to share between
    threads.
    """

    def __init__(
        self,
        what: str,
        stamp: Callable[[], object],
        read: Callable[[object], T],
        initial: T,
        *,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        initial_stamp: object = _UNREAD,
    ) -> None:
        self.what = what
        self.check_interval = check_interval
        self.last_error: str | None = None
        self._stamp_of, self._read = stamp, read
        self._clock = clock
        self._background = background
        self._checking = False
        self._lock = threading.Lock()
        self._value = initial
        self._stamp = initial_stamp
        try:
            self._check()
        finally:
            self._checked = clock()

    def current(self) -> T:
        """The value to use now, read again if it changed since the last look."""
        if self._checking or self._clock() - self._checked < self.check_interval:
            return self._value
        with self._lock:
            now = self._clock()
            if self._checking or now - self._checked < self.check_interval:
                return self._value
            self._checked = now
            if not self._background:
                self._check()
                return self._value
            self._checking = True
        threading.Thread(target=self._check_and_release, name=f"{self.what}-check", daemon=True).start()
        return self._value

    def refresh(self) -> T:
        """Read the value now if it changed, rather than at the next look."""
        with self._lock:
            self._checked = self._clock()
            self._check()
            return self._value

    def _check_and_release(self) -> None:
        try:
            with self._lock:
                self._check()
        finally:
            self._checking = False

    @property
    def stamp(self) -> object:
        """The stamp of the newest change looked at: in use, unless :attr:`last_error` says otherwise."""
        return self._stamp

    def _check(self) -> None:
        stamp: object = _UNREAD
        try:
            stamp = self._stamp_of()
            if stamp == self._stamp:
                return
            value = self._read(stamp)
        except Unusable as exc:
            self._stamp = stamp
            self._failed(str(exc))
            return
        except Exception as exc:  # any storage failure: keep the value in use
            self._failed(f"cannot read the {self.what}: {exc}")
            return
        self.last_error = None
        self._stamp = stamp
        self._value = value

    def _failed(self, problem: str) -> None:
        if problem != self.last_error:
            logger.warning("%s: keeping those in use: %s", self.what, problem)
        self.last_error = problem


class Combined(Generic[T, S]):
    """``combine(rules(), side())``, as the scorer takes it at every batch: built again only when
    either side is a new object, so the rule set's worked-out plan is kept from one batch to the next."""

    def __init__(self, rules: Callable[[], T], side: Callable[[], S], combine: Callable[[T, S], T]) -> None:
        self._rules, self._side, self._combine = rules, side, combine
        self._last: tuple[T, S, T] | None = None

    def __call__(self) -> T:
        rules, side = self._rules(), self._side()
        last = self._last
        if last is not None and last[0] is rules and last[1] is side:
            return last[2]
        combined = self._combine(rules, side)
        self._last = (rules, side, combined)
        return combined
