"""The domain's records: the canonical transaction and label (single and columnar), the decisions
made on them and the alerts they raise.

Every other part speaks these; they depend on no other part of fraudstream.
"""

from fraudstream.events.alert import Alert, DeliveryAttempt
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import COLUMNS, normalize_frame, records_to_frame
from fraudstream.events.transaction import DECISIONS, Channel, Label, Transaction

__all__ = [
    "COLUMNS",
    "DECISIONS",
    "Alert",
    "Channel",
    "DecisionColumns",
    "DecisionRecord",
    "DeliveryAttempt",
    "Label",
    "SchemaError",
    "Transaction",
    "normalize_frame",
    "records_to_frame",
]
