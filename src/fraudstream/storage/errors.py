"""Errors raised by the storage layer, so callers never need to catch SQLAlchemy's own."""

from __future__ import annotations

from collections.abc import Iterable


class StorageError(RuntimeError):
    """The database cannot be reached or used; the message says which one and what to do."""


class NotFoundError(StorageError):
    """A row that the caller required does not exist."""


class BodyConflictError(Exception):
    """Transactions sent under ids already known with a different body: an id names one transaction, so
    the second body is refused rather than stored beside (or decided instead of) the first. ``ids`` lists
    them. Not a :class:`StorageError`: the database is fine, the request is not (HTTP 409)."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        which = "transaction_id" if len(self.ids) == 1 else "transaction_ids"
        super().__init__(
            f"{which} {shown}{more} already received with a different body: an id names one transaction; "
            "send the same body again for its decision, or a new id for a new transaction"
        )
