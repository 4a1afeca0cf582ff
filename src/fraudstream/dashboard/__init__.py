"""The Streamlit dashboard: live figures, charts, the FLAG/BLOCK feed, alerts, the model, and labelling.

It reads everything through the HTTP API (:mod:`fraudstream.dashboard.client`), so it can run on any
machine that reaches the API. Start it with ``fraudstream dashboard``; nothing here imports Streamlit.

On a loopback address the page uses the key it is given, as the person at this machine could use the
API anyway. Bound to any other address, the page is given no key: each browser session signs in with
an API key of its own, which the API checks, and which is kept in that session only. A dashboard beyond
loopback is refused outright for an API without keys, which it would open to anyone who reaches it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

#: The script ``streamlit run`` executes.
APP_PATH = Path(__file__).with_name("app.py")


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only: a loopback address or
    ``localhost``. Anything else is not, an empty host (every interface) and other names included."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


__all__ = ["APP_PATH", "is_loopback"]
