"""Query parameter types that read only what their description promises.

Pydantic reads a bare number as seconds since 1970 for a ``datetime`` (``since=0.5``) or a ``date``
(``date=0``): convenient for Python, a silent surprise in a URL. These types take ISO 8601 text only,
and a time within the range the API stores (1990 to 2100, naive meaning UTC).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator

from fraudstream.events.transaction import UTCTime

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_time(value: Any) -> Any:
    if isinstance(value, str) and not _TIME.match(value):
        raise ValueError("must be an ISO 8601 time such as 2025-03-01T12:00:00Z (naive means UTC)")
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, str) and not _DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


QueryTime = Annotated[UTCTime, BeforeValidator(_iso_time)]
"""An ISO 8601 time in UTC (naive taken as UTC), 1990-01-01 to 2100-01-01."""

QueryDate = Annotated[date, BeforeValidator(_iso_date)]
"""A ``YYYY-MM-DD`` date; its range is the parameter's own (``ge``/``lt``)."""
