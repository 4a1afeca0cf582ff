"""The Streamlit dashboard: live figures, charts, the FLAG/BLOCK feed, alerts, the model, and labelling.

It reads everything through the HTTP API (:mod:`fraudstream.dashboard.client`), so it can run on any
machine that reaches the API. Start it with ``fraudstream dashboard``; nothing here imports Streamlit.
"""

from __future__ import annotations

from pathlib import Path

#: The script ``streamlit run`` executes.
APP_PATH = Path(__file__).with_name("app.py")

__all__ = ["APP_PATH"]
