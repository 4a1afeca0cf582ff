"""``fraudstream dashboard``: the Streamlit dashboard, run as a ``streamlit run`` subprocess.

A subprocess rather than Streamlit's in-process bootstrap, so the demo can start and stop it like any
other server, and a crash in the page never takes the API down with it.

Beyond loopback the page is given no key and asks each user to sign in with their own (see
:mod:`fraudstream.dashboard`); it is not started at all for an API that takes requests without a key.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Annotated

import typer

from fraudstream.commands.common import console
from fraudstream.config import Settings
from fraudstream.dashboard import is_loopback

STOP_TIMEOUT = 10.0


class DashboardError(Exception):
    """The dashboard cannot be started (Streamlit missing, or it exited at once)."""


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run`` on the packaged page, headless, with no telemetry and no file watcher."""
    from fraudstream.dashboard import APP_PATH

    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def refuse_open_api(api_url: str, host: str) -> None:
    """Raise :class:`DashboardError` when the API at ``api_url`` answers without a key, for a dashboard
    bound to ``host``, beyond loopback: it would hand the API to anyone who reaches ``host``. An API
    that cannot be reached yet is let be: the page asks again before anyone signs in."""
    from fraudstream.dashboard.client import ApiClient
    from fraudstream.dashboard.client import DashboardError as PageError

    client = ApiClient(api_url, timeout=5.0)
    try:
        required = client.keys_required()
    except PageError:
        return
    finally:
        client.close()
    if not required:
        raise DashboardError(
            f"refusing to serve the dashboard on {host}: the API at {api_url} takes requests without a key, "
            "and the dashboard would open it to anyone who reaches this address. Give the API keys "
            "(`fraudstream keys create NAME --role analyst`, or FRAUD_API_KEYS; users then sign in with "
            "their own key), or bind the dashboard to 127.0.0.1"
        )


def start_dashboard(
    api_url: str, *, host: str, port: int, api_key: str | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the dashboard for the API at ``api_url``; its output goes to ``log`` (default: inherited).

    The URL and key travel as ``FRAUD_API_URL`` / ``FRAUD_API_KEY``, never on the command line, where
    other users of the machine could read the key. Bound beyond loopback, the page gets no key (its
    users sign in), and an API without keys is refused (:func:`refuse_open_api`).
    """
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("altair") is None:
        raise DashboardError("the dashboard needs Streamlit and Altair: pip install 'fraudstream[dashboard]'")
    if not is_loopback(host):
        refuse_open_api(api_url, host)
        api_key = None
    env = os.environ | {"FRAUD_API_URL": api_url, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    for name in ("FRAUD_API_KEY", "FRAUD_API_KEYS"):  # the page gets the one key it uses, if any
        env.pop(name, None)
    if api_key:
        env["FRAUD_API_KEY"] = api_key
    output: IO[bytes] | None = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        output = log.open("ab")
    try:
        return subprocess.Popen(
            streamlit_command(host, port),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
    finally:
        if output is not None:
            output.close()  # the child holds its own copy of the descriptor


def stop_dashboard(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Ask the dashboard to exit (SIGTERM), and kill it if it has not within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> bool:
    """Whether the dashboard answers its health check within ``timeout`` (False if it exited)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def dashboard(
    api_url: Annotated[
        str | None, typer.Option(help="The API to read (env FRAUD_API_URL; default http://127.0.0.1:8000).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Dashboard port (env FRAUD_DASHBOARD_PORT; 8501).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (env FRAUD_HOST).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="FRAUD_API_KEY", help="API key, when the API has keys (stored or FRAUD_API_KEYS)."
        ),
    ] = None,
) -> None:
    """Run the live dashboard (Streamlit): figures, charts, the FLAG/BLOCK feed, alerts, the model,
    customer profiles and fraud/legitimate labelling, the case queue and entity links, all read
    through the HTTP API. Ctrl-C stops it.

    On 127.0.0.1 it uses --api-key (or the first of FRAUD_API_KEYS). On any other address each user
    signs in with their own key (an analyst's to work cases), and an API without keys is refused."""
    settings = Settings()
    url = api_url or settings.api_url
    bind, listen = host or settings.host, port or settings.dashboard_port
    key = api_key or next(iter(sorted(settings.api_key_set)), None)
    try:
        process = start_dashboard(url, host=bind, port=listen, api_key=key)
    except DashboardError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    console.print(f"dashboard http://{bind}:{listen} reading the API at {url} — Ctrl-C to stop")
    if not is_loopback(bind):
        console.print("  reachable beyond this machine: each user signs in with an API key of their own")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while process.poll() is None and not stop.wait(0.5):
            pass
    finally:
        stop_dashboard(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise typer.Exit(0 if stop.is_set() else process.returncode)
