"""Errors raised when input does not match the canonical schema."""

from __future__ import annotations


class SchemaError(ValueError):
    """Input does not fit the canonical transaction schema.

    ``field`` is the dotted path of the offending field and ``row`` the position in a batch when known,
    so that an API or CLI can point the user at exactly what to fix.
    """

    def __init__(self, field: str, reason: str, row: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.row = row
        where = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}field {field!r}: {reason}")
