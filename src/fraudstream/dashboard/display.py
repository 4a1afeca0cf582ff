"""How the dashboard shows values: every time in one format and in the viewer's time zone, counts with
the right plural, and tables with a dash for a missing value that fit the part of the page they are in.

``local_time``, ``plural`` and ``prepare`` are plain functions, tested without a browser; ``table``
draws a prepared frame with Streamlit and ``viewer_zone`` reads the zone the browser reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st
from pandas.api import types

#: The one time format of the dashboard (text, tables and chart tooltips; the axes show its clock part).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: What a table shows for a value the API did not give.
MISSING = "–"
UTC = ZoneInfo("UTC")

#: Columns of text the API fills with times (ISO 8601, in UTC); any datetime column is one too.
TIME_COLUMNS = frozenset(
    {
        "at", "closed_at", "created_at", "decided_at", "label_time", "last_seen", "opened_at", "promoted_at",
        "received_at", "superseded_at", "time", "timestamp", "updated_at",
    }
)  # fmt: skip
#: Money, shown with cents.
AMOUNT_COLUMNS = frozenset({"amount", "fraud_amount", "caught_fraud_amount", "expected_loss", "priority"})
#: Shares and probabilities, shown with three decimals.
RATIO_COLUMNS = frozenset(
    {
        "probability", "max_probability", "precision", "recall", "hit_rate", "agreement", "auc", "AUC",
        "average precision", "false-positive rate", "recall at the acting flag rate", "PSI", "share",
    }
)  # fmt: skip

#: The width a table is laid out for, in pixels: the main column of a 1280-pixel-wide window with the
#: sidebar open. A table in a part of the page is given that share of it.
PAGE_WIDTH = 800
#: Pixels per character of cell text (a little more than the grid's font takes), and around it.
CHAR_WIDTH = 6.5
CELL_PADDING = 20
NARROWEST = 56
#: The grid's row height, in pixels (its header's too).
ROW_HEIGHT = 35
#: The share of the page a table inside an expander has (the expander's border and padding take the rest).
PANEL = 0.94
#: A column whose longest text is longer than this is free text: the first to be cut when space is short.
FREE_TEXT = 24
#: Cell text longer than this is not read to size its column (it is cut with an ellipsis anyway).
LONGEST_SIZED = 60


def viewer_zone() -> ZoneInfo:
    """The time zone the viewer's browser reports, or UTC when it reports none this server knows."""
    return zone_named(st.context.timezone)


def zone_named(name: str | None) -> ZoneInfo:
    """``name`` as a zone; UTC for no name or a name the zone database does not hold."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _missing(value: Any) -> bool:
    if isinstance(value, str):
        return value == ""
    if value is None or isinstance(value, list | tuple | Mapping):
        return value is None
    return bool(pd.isna(value))


def local_time(value: Any, zone: ZoneInfo) -> str:
    """A time from the API (ISO text or a datetime; without an offset it is UTC, as the API's are) in
    ``zone``, as ``TIME_FORMAT``; :data:`MISSING` for none."""
    if _missing(value):
        return MISSING
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return str(stamp.tz_convert(zone).strftime(TIME_FORMAT))


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 decision``, ``2 decisions``, ``1,204 decisions``: the count and the noun in agreement."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def _cell(value: Any) -> Any:
    """An object cell as a table shows it: lists joined, mappings as ``key: value``, booleans (of a
    column that also has missing ones) as yes/no; anything missing stays missing."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else None
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if value else None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _header(name: Any) -> str:
    return str(name).replace("_", " ")


def _number_format(name: str) -> str | None:
    if name in AMOUNT_COLUMNS:
        return "%.2f"
    if name in RATIO_COLUMNS or _header(name) in RATIO_COLUMNS:
        return "%.3f"
    return None


def _text(value: Any, fmt: str | None) -> str:
    """The text a cell shows, to size its column."""
    if _missing(value):
        return MISSING
    if isinstance(value, float):
        return fmt % value if fmt else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _whole(column: pd.Series) -> bool:
    present = column.dropna()
    return (
        bool(len(present)) and bool((present == present.round()).all()) and bool(present.abs().max() < 2**53)
    )


def _capped(natural: Mapping[str, int], budget: int) -> dict[str, int]:
    """The widest of ``natural`` cut to one common width so they add up to ``budget`` at most."""
    widths = sorted(natural.values())
    left, cap = budget, max(widths, default=0)
    for index, width in enumerate(widths):
        share = left // (len(widths) - index)
        if width > share:
            cap = max(share, NARROWEST)
            break
        left -= width
    return {name: min(width, cap) for name, width in natural.items()}


def fit_widths(natural: Mapping[str, int], budget: int, flexible: Iterable[str] = ()) -> dict[str, int]:
    """Column widths that add up to at most ``budget`` pixels: each column as wide as its text when
    they fit; otherwise the ``flexible`` ones (free text, read in part) are cut to a common width,
    and only when that is not enough all of them, so times, ids and figures keep their whole text
    as long as they can. No column is cut below :data:`NARROWEST`."""
    if sum(natural.values()) <= budget:
        return dict(natural)
    loose = {name: natural[name] for name in flexible if name in natural}
    fixed = {name: width for name, width in natural.items() if name not in loose}
    room = budget - sum(fixed.values())
    if loose and room >= NARROWEST * len(loose):
        return {**fixed, **_capped(loose, room)}
    return _capped(natural, budget)


def prepare(
    frame: pd.DataFrame, zone: ZoneInfo, budget: int = PAGE_WIDTH
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``frame`` as a table shows it, and its column configuration: times in ``zone`` in the one format,
    lists and mappings as text, readable headers, money with cents, shares with three decimals, and
    column widths that fit ``budget`` pixels."""
    shown = pd.DataFrame(index=frame.index)
    config: dict[str, Any] = {}
    natural: dict[str, int] = {}
    flexible: list[str] = []
    for name in frame.columns:
        column = frame[name]
        header = _header(name)
        timed = name in TIME_COLUMNS and not (types.is_numeric_dtype(column) or types.is_bool_dtype(column))
        if timed or types.is_datetime64_any_dtype(column):
            texts = [local_time(v, zone) for v in column]
            shown[header] = pd.Series(  # this format sorts as time does
                [None if t == MISSING else t for t in texts], index=frame.index, dtype=object
            )
        elif types.is_bool_dtype(column) or types.is_numeric_dtype(column):
            fmt = None if types.is_bool_dtype(column) else _number_format(str(name))
            if types.is_float_dtype(column) and fmt is None and _whole(column):
                column = column.astype("Int64")  # ids and counts with a gap: no ".0" on the others
            shown[header] = column
            texts = ["yes" if types.is_bool_dtype(column) else _text(v, fmt) for v in column]
            if fmt:
                config[header] = st.column_config.NumberColumn(format=fmt)
        else:
            shown[header] = pd.Series([_cell(v) for v in column], index=frame.index, dtype=object)
            texts = [_text(v, None) for v in shown[header]]
        longest = max([len(header), *(min(len(t), LONGEST_SIZED) for t in texts)])
        natural[header] = int(CELL_PADDING + CHAR_WIDTH * longest)
        if longest > FREE_TEXT and not timed:
            flexible.append(header)
    for header, width in fit_widths(natural, budget, flexible).items():
        column_config = config.get(header) or st.column_config.Column()
        column_config["width"] = width
        config[header] = column_config
    return shown, config


def table(
    frame: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    share: float = 1.0,
    height: int | None = None,
) -> None:
    """Draw ``frame`` as a table laid out for ``share`` of the page's width (see :func:`prepare`)."""
    data = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    shown, config = prepare(data, viewer_zone(), int(PAGE_WIDTH * share))
    if height is not None:  # no taller than its rows: no empty lines under a short table
        height = min(height, ROW_HEIGHT * (len(shown) + 1) + 3)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        height=height if height is not None else "auto",
        column_config=config,
        placeholder=MISSING,
    )


#: Characters Markdown would read as markup (the static table's cells are Markdown).
MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~=])")


def _literal(value: Any) -> str:
    return MARKDOWN.sub(r"\\\1", str(value))


def text_table(frame: pd.DataFrame, code: Iterable[str] = ()) -> None:
    """Draw a small table of text to be read whole (rules' conditions and reasons): its cells wrap
    instead of being cut, so it fits any width; yes/no for booleans, :data:`MISSING` for none. The
    text is shown as it is (no Markdown), the ``code`` columns in a fixed-width font."""
    shown, _ = prepare(frame, viewer_zone())
    as_code = {_header(name) for name in code}
    cells = pd.DataFrame(index=shown.index)
    for header in shown.columns:
        texts = [MISSING if _missing(v) else _cell(v) for v in shown[header]]
        cells[header] = [
            t if t == MISSING else f"`{t}`" if header in as_code and "`" not in str(t) else _literal(t)
            for t in texts
        ]
    st.table(cells, hide_index=True, border="horizontal")


def times_caption(zone: ZoneInfo) -> str:
    """The line that says which zone the page's times are in."""
    now = datetime.now(zone).strftime("%z")
    return f"times in {zone.key} (UTC{now[:3]}:{now[3:]})"
