"""Rules that follow their source while running: a YAML file analysts edit (:class:`ReloadingRules`), or
the newest version saved in the database (:class:`DatabaseRules`)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from fraudstream.rules._polled import Polled, Unusable
from fraudstream.rules.errors import RulesError
from fraudstream.rules.loader import load_rules, rules_from_bytes
from fraudstream.rules.ruleset import RuleSet

logger = logging.getLogger(__name__)


class ReloadingRules:
    """The current rules of a file, reloaded when the file changes.

    :meth:`current` is cheap enough to call for every batch: it looks at the file's modification time,
    size and inode at most every ``check_interval`` seconds (by ``clock``, injectable for tests) and
    reloads only when they changed. A broken edit never takes effect: the previous rules keep being
    served, the problem is logged once and kept in :attr:`last_error` until a good version loads.
    Editors that truncate before writing briefly leave an empty file, so once running an empty file
    counts as broken, and a file that changes while being read is read again at the next check;
    replacing the file atomically (write a temporary file, then rename it) avoids both windows.
    The file must be valid at construction, so a service does not start without its rules.
    Safe to share between threads.
    """

    def __init__(
        self,
        path: str | Path,
        known_names: Iterable[str] | Mapping[str, str],
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        skip_unknown: bool = False,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self.last_error: str | None = None
        self._known = dict(known_names) if isinstance(known_names, Mapping) else list(known_names)
        self._clock = clock
        self._skip_unknown = skip_unknown
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._rules = load_rules(self.path, self._known, skip_unknown=skip_unknown)
        self._checked = clock()

    def current(self) -> RuleSet:
        """The rules to use now, after a reload if the file changed since the last check."""
        if self._clock() - self._checked < self.check_interval:
            return self._rules
        with self._lock:
            now = self._clock()
            if now - self._checked >= self.check_interval:
                self._checked = now
                stamp = self._file_stamp()
                if stamp != self._stamp:
                    try:
                        rules, read = self._load()
                    except RulesError as exc:
                        self._stamp = stamp
                        self._failed(exc)
                    else:
                        if self._file_stamp() == read:
                            self._stamp = read
                            self._use(rules)
            return self._rules

    def reload(self) -> RuleSet:
        """Load the file now, whether or not it changed; raises :class:`RulesError` if it is invalid
        (the previous rules stay in use)."""
        with self._lock:
            self._checked = self._clock()
            try:
                rules, self._stamp = self._load()
            except RulesError as exc:
                self._stamp = self._file_stamp()
                self._failed(exc)
                raise
            self._use(rules)
            return self._rules

    def _load(self) -> tuple[RuleSet, tuple[int, int, int] | None]:
        stamp = self._file_stamp()
        if stamp is not None and stamp[1] == 0:
            problem = "the file is empty (still being written?); write 'rules: []' to remove every rule"
            raise RulesError(problem, source=str(self.path))
        return load_rules(self.path, self._known, skip_unknown=self._skip_unknown), stamp

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _use(self, rules: RuleSet) -> None:
        self.last_error = None
        if rules.version != self._rules.version:
            logger.info("rules %s: now version %s (%d rules)", self.path, rules.version, len(rules))
            self._rules = rules

    def _failed(self, exc: RulesError) -> None:
        self.last_error = str(exc)
        logger.warning("rules %s: keeping version %s: %s", self.path, self._rules.version, exc)


class StoredVersion(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def text(self) -> str: ...


class VersionSource(Protocol):
    """Where :class:`DatabaseRules` reads versions: :class:`~fraudstream.storage.rules.RulesRepository`."""

    def newest_version(self) -> int | None: ...

    def get(self, version: int | None = None) -> StoredVersion | None: ...


def compile_version(
    stored: StoredVersion, known_names: Iterable[str] | Mapping[str, str], *, skip_unknown: bool = False
) -> RuleSet:
    """A stored version's rules, named by its number (the version decisions record)."""
    rules = rules_from_bytes(
        stored.text, known_names, f"rules version {stored.version}", skip_unknown=skip_unknown
    )
    return replace(rules, version=str(stored.version))


class DatabaseRules:
    """The newest rules version saved in the database, followed while running.

    :meth:`current` asks the source for the newest version number at most every ``check_interval``
    seconds (by ``clock``) and compiles a new version once. With ``background`` (the default) the
    check runs on a short-lived thread of its own and :meth:`current` answers with the rules in use
    meanwhile, so scoring (on the event loop, too) never waits on the database; without it, the check
    runs in the caller. A version that does not compile here (a feature this model lacks) never takes
    effect: the previous rules keep being served, and the problem is logged once and kept in
    :attr:`last_error`. A failed check (the database unreachable) keeps the current rules too. A
    version must exist and compile at construction, so a service does not start without its rules.
    Safe to share between threads.
    """

    def __init__(
        self,
        source: VersionSource,
        known_names: Iterable[str] | Mapping[str, str],
        *,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        skip_unknown: bool = False,
        background: bool = True,
    ) -> None:
        self._source = source
        self._known = dict(known_names) if isinstance(known_names, Mapping) else list(known_names)
        self._skip_unknown = skip_unknown
        stored = source.get()
        if stored is None:
            raise RulesError("no rules version is stored: save one (PUT /v1/rules) or seed from a file")
        self._polled = Polled(
            "rules",
            source.newest_version,
            self._read,
            compile_version(stored, self._known, skip_unknown=skip_unknown),
            check_interval=check_interval,
            clock=clock,
            background=background,
            initial_stamp=stored.version,
        )

    def current(self) -> RuleSet:
        """The rules to use now, after loading a newer version if one was saved since the last check."""
        return self._polled.current()

    def refresh(self) -> RuleSet:
        """Look for a newer version now rather than at the next check: the saving process uses it at once."""
        return self._polled.refresh()

    @property
    def last_error(self) -> str | None:
        """Why the newest version looked at is not in use (it does not compile, or could not be read)."""
        return self._polled.last_error

    @property
    def check_interval(self) -> float:
        """Seconds between two looks at the newest version number."""
        return self._polled.check_interval

    def _read(self, newest: object) -> RuleSet:
        if not isinstance(newest, int):  # no version at all any more: keep the rules in use
            raise Unusable("no rules version is stored")
        stored = self._source.get(newest)
        if stored is None:
            raise LookupError(f"rules version {newest} is not stored")
        try:
            rules = compile_version(stored, self._known, skip_unknown=self._skip_unknown)
        except RulesError as exc:
            raise Unusable(str(exc)) from exc
        logger.info("rules: now version %s (%d rules)", rules.version, len(rules))
        return rules
