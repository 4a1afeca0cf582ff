"""A service that goes away: a TCP forwarder to it, in threads of the test process, that a test cuts.

Code under test connects to :attr:`Forwarder.url` as it would to the service itself; after
:meth:`Forwarder.cut` its open connections are dropped and new ones refused, as when the server stops,
while the real service goes on serving everyone else.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit


class Forwarder:
    """Forwards connections to a loopback port on to ``url``'s host and port, until :meth:`cut`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 0)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        #: ``url`` with this forwarder's port in place of the service's.
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, name="test-forwarder", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for ends in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=ends, name="test-forwarder", daemon=True).start()

    def cut(self) -> None:
        """Drop every forwarded connection and refuse new ones."""
        with self._lock:
            self._cut = True
            connections, self._open = self._open, []
        for sock in (self._listener, *connections):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it, which close() does not
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def forwarded(url: str) -> Iterator[Forwarder]:
    """A :class:`Forwarder` to ``url``'s service, cut at the end of the block if not before."""
    forwarder = Forwarder(url)
    try:
        yield forwarder
    finally:
        forwarder.cut()
