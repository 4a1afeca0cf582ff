"""Event schemas: the canonical transaction and label, single and columnar."""

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import COLUMNS, normalize_frame, records_to_frame
from fraudstream.events.transaction import DECISIONS, Channel, Label, Transaction

__all__ = [
    "COLUMNS",
    "DECISIONS",
    "Channel",
    "Label",
    "SchemaError",
    "Transaction",
    "normalize_frame",
    "records_to_frame",
]
