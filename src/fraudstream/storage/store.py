"""``Store``: the one store behind the engine and the API, on SQLite (embedded) or PostgreSQL.

A :class:`Store` is a :class:`~.database.Database` and the repositories that read and write it, one
per kind of data: ``store.decisions``, ``store.queue``, ``store.alerts``, ``store.labels``,
``store.dead_letters``, ``store.reports``, ``store.history`` (columns read back for retraining) and
``store.promotions`` (who moved the serving model's alias, when, and why) and ``store.comparison``
(labelled decisions as columns, to compare the served model with the challenger in shadow) and
``store.cases`` (FLAG, HOLD and BLOCK decisions grouped into the analysts' cases, and the audit log) and
``store.entities`` (a customer, device, IP or merchant with its history and links), ``store.keys``
(the named API keys, hashed) and ``store.rules`` (the saved rules versions, and the stored decisions
as a backtest reads them) and ``store.archive`` (how far the object-store archive has copied them)
and ``store.parity`` (the online/offline feature parity checks) and ``store.snoozes`` (the analysts' rule
snoozes) and ``store.rule_guard`` (the rules' backtested hit rates and the rules the guard moved to
shadow) and ``store.holds`` (payments decided HOLD and how their waits ended) and ``store.challenges``
(the results of step-up challenges) and ``store.webhooks`` (event webhooks: endpoints, events,
deliveries and their log). The repositories share nothing but
the database (the decisions repository also its :class:`~._saving.DecisionSaver`), and the same code
runs on both databases; what differs between them is in the database's dialect object
(:mod:`._dialect`).
"""

from __future__ import annotations

from typing import Any, Self

from sqlalchemy import URL, Executable

from fraudstream.storage._labels import LabelRepository
from fraudstream.storage._report import ReportRepository
from fraudstream.storage._saving import DecisionSaver
from fraudstream.storage.alerting import AlertRepository
from fraudstream.storage.archive import ArchiveRepository
from fraudstream.storage.cases import CaseRepository
from fraudstream.storage.challenges import ChallengeRepository
from fraudstream.storage.comparison import ComparisonRepository
from fraudstream.storage.database import Database
from fraudstream.storage.dead_letters import DeadLetterRepository
from fraudstream.storage.decisions import FLAGGED, LATENCY_SAMPLE, RECENT_SECONDS, DecisionRepository
from fraudstream.storage.entities import EntityRepository
from fraudstream.storage.guard import RuleGuardRepository
from fraudstream.storage.history import HistoryRepository
from fraudstream.storage.holds import HoldRepository
from fraudstream.storage.keys import KeyRepository
from fraudstream.storage.outbox import QueueRepository
from fraudstream.storage.parity import ParityRepository
from fraudstream.storage.promotions import PromotionRepository
from fraudstream.storage.rules import RulesRepository
from fraudstream.storage.snoozes import SnoozeRepository
from fraudstream.storage.webhooks import WebhookRepository

__all__ = ["FLAGGED", "LATENCY_SAMPLE", "RECENT_SECONDS", "Store"]


class Store:
    """Transactions, decisions, labels, alerts, dead letters and the queue, in one database.

    ``Store("sqlite:///fraudstream-data/fraud.db")`` or ``Store("postgresql+psycopg://...")``; nothing
    connects until first use. Call :meth:`migrate` once at start-up. Safe to share between threads.
    """

    def __init__(self, url: str | URL, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.db = Database(url, pool_size=pool_size, max_overflow=max_overflow)
        saver = DecisionSaver(self.db)
        self.decisions = DecisionRepository(self.db, saver)
        self.queue = QueueRepository(self.db)
        self.alerts = AlertRepository(self.db)
        self.labels = LabelRepository(self.db)
        self.dead_letters = DeadLetterRepository(self.db)
        self.reports = ReportRepository(self.db)
        self.history = HistoryRepository(self.db)
        self.promotions = PromotionRepository(self.db)
        self.comparison = ComparisonRepository(self.db)
        self.holds = HoldRepository(self.db)
        self.challenges = ChallengeRepository(self.db)
        self.cases = CaseRepository(self.db, self.labels, self.holds)
        self.entities = EntityRepository(self.db)
        self.keys = KeyRepository(self.db)
        self.rules = RulesRepository(self.db)
        self.archive = ArchiveRepository(self.db)
        self.parity = ParityRepository(self.db)
        self.snoozes = SnoozeRepository(self.db)
        self.rule_guard = RuleGuardRepository(self.db)
        self.webhooks = WebhookRepository(self.db)

    @property
    def url(self) -> URL:
        """The database URL (its driver chosen, see :func:`~.database.normalize_url`)."""
        return self.db.url

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.db.dialect

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.db.safe_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> None:
        """Create or upgrade the schema, atomically and safely when several processes start at once."""
        self.db.migrate()

    def ping(self) -> str:
        """The server's version, proving the database is reachable: ``"SQLite 3.45.1"``."""
        return self.db.ping()

    def query(self, statement: Executable) -> list[Any]:
        """The rows of a read-only SQLAlchemy Core ``statement``, for read models kept beside the API
        (live feed, chart series); failures become :class:`~.errors.StorageError` like every other read."""
        return self.db.query(statement)

    def close(self) -> None:
        """Close every pooled connection; the store reconnects if used again."""
        self.db.close()
