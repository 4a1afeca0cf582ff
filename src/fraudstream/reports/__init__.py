"""Reports over stored decisions and labels: the daily report (``fraudstream report``)."""

from __future__ import annotations

from fraudstream.reports.daily import DailyReport, ReportError, daily_report, parse_day
from fraudstream.reports.render import FORMATS, MEDIA_TYPES, render

__all__ = ["FORMATS", "MEDIA_TYPES", "DailyReport", "ReportError", "daily_report", "parse_day", "render"]
