"""How uvicorn serves the API: a deadline for each request to arrive, a cap on connections, and which
proxies' ``X-Forwarded-For`` is believed.

Without a deadline, a client that sends headers and withholds the body (or sends it a byte a second)
holds a connection and a descriptor as long as it likes, and a few thousand such clients leave none
for anybody else, the liveness probe included; without a cap, descriptors run out before any
deadline fires. A forwarded address is believed only from the proxies the operator names: any client
could otherwise claim any address, and the per-address limits would count nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fraudstream.config import Settings


class _Deadlined(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request has not arrived whole (headers and
    body) within :attr:`read_timeout` seconds of the connection, or of the end of the previous
    response. A request that has arrived may take as long as its route does (long polls, streams)."""

    read_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that apply FRAUD_READ_TIMEOUT,
    FRAUD_MAX_CONNECTIONS and FRAUD_FORWARDED_ALLOW_IPS."""
    protocol = type("DeadlinedHttp", (_Deadlined,), {"read_timeout": settings.read_timeout})
    trusted = settings.forwarded_allow_ips.strip()
    return {
        "http": protocol,
        "limit_concurrency": settings.max_connections,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or "",
    }
