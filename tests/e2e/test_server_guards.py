"""``fraudstream serve`` against hostile clients: a request must arrive whole within FRAUD_READ_TIMEOUT,
connections are capped, and X-Forwarded-For is believed only from the proxies FRAUD_FORWARDED_ALLOW_IPS
names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fraudstream.api.server import server_options
from fraudstream.config import Settings
from tests.e2e.apitools import tx

KEY = "guards-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, bundle_path: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_API_KEYS": KEY,
        "FRAUD_READ_TIMEOUT": "1",
        "FRAUD_MAX_CONNECTIONS": "20",
        "FRAUD_RATE_LIMIT_FAILED_AUTH": "3/minute",
    }
    command = [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reading whatever it answers first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False


def test_a_request_that_does_not_arrive_whole_in_time_is_closed_and_harms_no_one(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    head = (
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    )
    slow = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head.encode() + b'{"transaction_id": ')  # the rest of the body never comes
        slow.append(sock)
    idle = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
    halfway = socket.create_connection(("127.0.0.1", port))
    halfway.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    assert httpx.get(f"{server}/health", timeout=2).status_code == 200  # meanwhile, others are served
    answer = httpx.post(f"{server}/v1/score", json=tx("g-1"), headers={"X-API-Key": KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    for sock in [*slow, idle, halfway]:
        assert closed_within(sock, 10), "a slow client's connection was still open long past the deadline"
        sock.close()


def test_connections_past_the_cap_are_answered_503(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(25)]
    try:
        over = httpx.get(f"{server}/health", timeout=5)
        assert over.status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(f"{server}/health", timeout=5).status_code == 200


def test_a_forwarded_address_from_an_untrusted_client_is_ignored(server: str) -> None:
    """Rotating X-Forwarded-For does not escape the failed-authentication limit of the real address."""
    codes = [
        httpx.get(
            f"{server}/v1/stats",
            headers={"X-API-Key": f"guess-{i}", "X-Forwarded-For": f"10.0.0.{i}"},
            timeout=5,
        ).status_code
        for i in range(6)
    ]
    assert codes[:3] == [403, 403, 403] and codes[3:] == [429, 429, 429]
    valid = httpx.get(
        f"{server}/v1/stats", headers={"X-API-Key": KEY, "X-Forwarded-For": "10.0.0.9"}, timeout=5
    )
    assert valid.status_code == 200  # a valid key is never locked out


def test_forwarded_addresses_are_trusted_only_from_named_proxies() -> None:
    assert server_options(Settings())["proxy_headers"] is False
    options = server_options(Settings(forwarded_allow_ips="10.1.1.1"))
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == "10.1.1.1"
