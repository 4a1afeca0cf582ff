"""Errors raised by the storage layer, so callers never need to catch SQLAlchemy's own."""

from __future__ import annotations


class StorageError(RuntimeError):
    """The database cannot be reached or used; the message says which one and what to do."""


class NotFoundError(StorageError):
    """A row that the caller required does not exist."""
