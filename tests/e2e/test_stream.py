"""``GET /v1/stream`` (Server-Sent Events) under a real uvicorn server, and the other endpoints the
dashboard reads (``/v1/model``, ``/v1/stats/series``).

Decisions are written through a second :class:`Store` on the same database file, as a worker in
another process would: the feed must find them by tailing the table, not by an in-process hook.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudstream.api import create_app
from fraudstream.api.routes.stream import DecisionFeed
from fraudstream.config import Settings
from fraudstream.events.decision import DecisionRecord
from fraudstream.runtime import open_services
from fraudstream.storage import Store
from tests.serving import uvicorn_thread
from tests.waiting import wait_for

NOW = datetime.now(UTC)


@dataclass
class Server:
    url: str
    feed: DecisionFeed
    other: Store  # "another process": its own engine on the same database
    keys: str
    counter: list[int] = field(default_factory=lambda: [0])

    def decide(self, *outcomes: str, customer_id: str = "C1", padding: int = 0) -> list[str]:
        """Store one decision per outcome, in one commit, as a worker elsewhere would; their ids."""
        records, reasons = [], [{"rule": "test", **({"pad": "x" * padding} if padding else {})}]
        for outcome in outcomes:
            self.counter[0] += 1
            records.append(
                DecisionRecord(
                    transaction_id=f"t{self.counter[0]:05d}", customer_id=customer_id, amount=10.0,
                    timestamp=NOW, decision=outcome, probability=0.9 if outcome != "APPROVE" else 0.01,
                    reasons=reasons, rules=[], model_version="m", features={}, latency_ms={"total": 1.5},
                )
            )  # fmt: skip
        self.other.decisions.save(records)
        return [r.transaction_id for r in records]


@pytest.fixture
def server(tmp_path: Path, bundle_path: Path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path}/stream.db"
    settings = Settings(
        data_dir=tmp_path, database_url=url, model_path=bundle_path, api_keys="stream-key-012345"
    )
    services = open_services(settings, warm=False)
    app = create_app(settings, services)
    feed = DecisionFeed(services.store, interval=0.05, queue_size=5, heartbeat=0.5)
    app.state.decision_feed = feed
    other = Store(url)
    try:
        # A small send buffer (inherited by accepted connections) bounds what the kernel holds for a
        # client that stops reading, so the slow-consumer test needs a megabyte of events, not tens.
        with uvicorn_thread(app, send_buffer=8192) as base:
            yield Server(base, feed, other, "stream-key-012345")
        assert feed.task is None and not feed.subscribers  # the app's shutdown stopped the poller
    finally:
        other.close()
        services.close()


class Events:
    """Reads one SSE response: ``next()`` returns ``(event, data)``; comments are collected aside."""

    def __init__(self, response: httpx.Response) -> None:
        self.response, self.lines, self.comments = response, response.iter_lines(), []

    def next(self, timeout: float = 10.0) -> tuple[str, Any]:
        """The next event; heartbeats arrive twice a second, so a missing event fails here, not hangs."""
        name, data = "message", []
        deadline = time.monotonic() + timeout
        for line in self.lines:
            assert time.monotonic() < deadline, f"no event within {timeout} s"
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                return name, json.loads("\n".join(data))
        raise AssertionError("the stream ended")

    def take(self, n: int) -> list[tuple[str, Any]]:
        return [self.next() for _ in range(n)]


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Events]]:
    """Open a stream and wait for its ': connected' comment: from then on the client is subscribed."""
    client = httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys}, timeout=5.0)
    opened: list[Any] = []

    def open_stream(**params: Any) -> Events:
        context = client.stream("GET", "/v1/stream", params=params)
        response = context.__enter__()
        opened.append(context)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        for line in events.lines:
            if line == ": connected":
                break
        return events

    yield open_stream
    for context in opened:
        context.__exit__(None, None, None)
    client.close()


def test_decisions_after_connecting_arrive_filtered(server: Server, connect: Callable[..., Events]) -> None:
    before = server.decide("FLAG")
    flagged = connect(decision="FLAG,BLOCK")
    everything = connect()
    mine = connect(decision="block,flag", customer_id="C2")
    ids = server.decide("APPROVE", "FLAG", "APPROVE", "BLOCK")
    later = server.decide("FLAG", customer_id="C2")

    got = flagged.take(3)
    assert [data["transaction_id"] for _, data in got] == [ids[1], ids[3], later[0]]
    assert {name for name, _ in got} == {"message"}
    first = got[0][1]
    assert first["decision"] == "FLAG" and first["customer_id"] == "C1" and first["probability"] == 0.9
    assert first["reasons"] == [{"rule": "test"}] and first["amount"] == 10.0
    assert datetime.fromisoformat(first["decided_at"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(first["timestamp"]) == NOW
    assert before[0] not in [data["transaction_id"] for _, data in got]
    assert [data["transaction_id"] for _, data in everything.take(5)] == [*ids, *later]
    assert [data["transaction_id"] for _, data in mine.take(1)] == later

    body = {"transaction_id": "live-1", "timestamp": NOW.isoformat(), "customer_id": "C9", "amount": 12.0}
    scored = httpx.post(f"{server.url}/v1/score", json=body, headers={"X-API-Key": server.keys}, timeout=10)
    assert scored.status_code == 200, scored.text
    name, data = everything.next()  # a decision the API itself made arrives the same way
    assert (name, data["transaction_id"], data["decision"]) == (
        "message",
        "live-1",
        scored.json()["decision"],
    )


def test_a_decision_committed_late_is_still_sent_once(server: Server, connect: Callable[..., Events]) -> None:
    events = connect(decision="FLAG")
    time.sleep(0.3)  # decisions stamped before the subscription started are not sent
    (first,) = server.decide("FLAG")
    sent = events.next()[1]
    assert sent["transaction_id"] == first
    # a concurrent writer commits a decision stamped before the one already sent
    late = DecisionRecord(
        transaction_id="late", customer_id="C1", amount=1.0, timestamp=NOW, decision="FLAG", probability=0.5,
        reasons=[], rules=[], model_version="m", features={}, latency_ms={"total": 1.0},
        decided_at=datetime.fromisoformat(sent["decided_at"]) - timedelta(seconds=0.2),
    )  # fmt: skip
    server.other.decisions.save([late])
    (after,) = server.decide("FLAG")
    assert [data["transaction_id"] for _, data in events.take(2)] == ["late", after]


def stalled_stream(server: Server) -> tuple[socket.socket, Any]:
    """A client that subscribes and then stops reading, with a tiny receive buffer: once a few hundred
    kilobytes are in flight the server cannot write to it any more. HTTP/1.0, so the body is not chunked."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    sock.sendall(f"GET /v1/stream?decision=FLAG HTTP/1.0\r\nX-API-Key: {server.keys}\r\n\r\n".encode())
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"HTTP/1.1 200")
    while reader.readline().strip() != b": connected":
        pass
    return sock, reader


def read_events(reader: Any, until: str) -> list[tuple[str, Any]]:
    """Events from a raw SSE body up to and including the decision ``until``."""
    events, name, data = [], "message", ""
    for raw in reader:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif not line and data:
            events.append((name, json.loads(data)))
            if name == "message" and events[-1][1]["transaction_id"] == until:
                return events
            name, data = "message", ""
    raise AssertionError("the stream ended")


def test_a_slow_consumer_skips_ahead_without_blocking_others(
    server: Server, connect: Callable[..., Events]
) -> None:
    sock, reader = stalled_stream(server)
    fast = connect(decision="FLAG")
    sent: list[str] = []
    for _ in range(40):  # 200 decisions of ~8 kB, five (one client buffer) per commit
        ids = server.decide(*["FLAG"] * 5, padding=8000)
        assert [data["transaction_id"] for _, data in fast.take(5)] == ids  # the fast client misses nothing
        sent += ids
    assert len(server.feed.subscribers) == 2

    events = read_events(reader, until=sent[-1])  # the stalled client reads at last
    reader.close()
    sock.close()
    gaps = [data["skipped"] for name, data in events if name == "gap"]
    received = [data["transaction_id"] for name, data in events if name == "message"]
    assert gaps and all(n > 0 for n in gaps)
    assert len(received) + sum(gaps) == len(sent)
    assert received == [t for t in sent if t in set(received)]  # in order, only skipped ahead
    assert received[-5:] == sent[-5:]


def test_heartbeats_and_disconnect_cleanup(server: Server, connect: Callable[..., Events]) -> None:
    client = httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys}, timeout=5.0)
    with client.stream("GET", "/v1/stream") as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 3000"
        assert next(lines) == ": connected"
        assert [next(lines) for _ in range(3)] == ["", ": heartbeat", ""]
        assert len(server.feed.subscribers) == 1
    client.close()
    wait_for(lambda: not server.feed.subscribers, "the subscription to be dropped")
    wait_for(lambda: server.feed.task is None or server.feed.task.done(), "the poller to stop")
    events = connect(decision="BLOCK")  # the poller starts again with the next subscriber
    ids = server.decide("BLOCK")
    assert events.next()[1]["transaction_id"] == ids[0]


def test_stream_needs_a_key_and_valid_outcomes(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/stream", timeout=5).status_code == 401
    response = httpx.get(
        f"{server.url}/v1/stream?decision=FLAG,MAYBE", headers={"X-API-Key": "stream-key-012345"}, timeout=5
    )
    assert response.status_code == 422
    assert "comma-separated list of APPROVE, FLAG, CHALLENGE, HOLD, BLOCK" in response.text


def test_model_and_series_endpoints(server: Server) -> None:
    server.decide("APPROVE", "APPROVE", "FLAG", "BLOCK")
    client = httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys}, timeout=10.0)
    model = client.get("/v1/model").json()
    assert set(model["thresholds"]) >= {"flag", "block"}
    assert model["features"] > 50 and model["version"] and "validation" in model["metrics"]

    series = client.get("/v1/stats/series", params={"window": 600, "bucket": 60}).json()
    assert series["bucket_s"] == 60
    totals: dict[str, int] = {}
    for point in series["points"]:
        for name, count in point["by_decision"].items():
            totals[name] = totals.get(name, 0) + count
        assert point["latency_ms"]["mean"] == pytest.approx(1.5)
    assert totals == {"APPROVE": 2, "FLAG": 1, "BLOCK": 1}
    bins = series["scores"]
    assert len(bins) == 20 and bins[0]["by_decision"] == {"APPROVE": 2}
    assert bins[18]["by_decision"] == {"FLAG": 1, "BLOCK": 1}  # probability 0.9
    assert client.get("/v1/stats").json()["total"] == 4  # the existing summary is unchanged
    client.close()


def test_open_streams_are_capped_in_all_and_per_client(
    server: Server, connect: Callable[..., Events]
) -> None:
    server.feed.max_per_client, server.feed.max_subscribers = 2, 3
    opened = [connect(), connect()]  # kept: a dropped reader closes its response
    headers = {"X-API-Key": server.keys}
    third = httpx.get(f"{server.url}/v1/stream", headers=headers, timeout=5)
    assert third.status_code == 503 and "close one first" in third.json()["detail"]
    assert third.headers["Retry-After"]
    server.feed.max_per_client = 5
    opened.append(connect())  # the third stream in all
    full = httpx.get(f"{server.url}/v1/stream", headers=headers, timeout=5)
    assert full.status_code == 503 and "FRAUD_STREAM_MAX_CLIENTS" in full.json()["detail"]


def test_a_stream_with_a_duration_ends_by_itself(server: Server) -> None:
    client = httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys}, timeout=10.0)
    started = time.monotonic()
    response = client.get("/v1/stream", params={"duration": 0.5})
    assert response.status_code == 200 and ": connected" in response.text
    assert time.monotonic() - started < 5
    assert (
        httpx.get(f"{server.url}/v1/stream?duration=0", headers={"X-API-Key": server.keys}).status_code == 422
    )
    wait_for(lambda: not server.feed.subscribers, "the subscription to be dropped")
    client.close()


def test_many_streams_do_not_hold_up_scoring(server: Server, connect: Callable[..., Events]) -> None:
    """80 open streams, half of them stalled, while decisions are made through POST /v1/score: every
    reading stream gets every decision and no score request waits on the fan-out (a generous bound:
    writing one event per stream per decision used to take scoring to seconds)."""
    server.feed.max_per_client = server.feed.max_subscribers = 100
    server.feed.queue_size = 1000
    readers = [connect(decision="APPROVE,FLAG,BLOCK") for _ in range(40)]
    stalled = [stalled_stream(server) for _ in range(40)]
    client = httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys}, timeout=30.0)
    slowest, ids = 0.0, []
    for i in range(150):
        body = {
            "transaction_id": f"fan-{i}",
            "timestamp": NOW.isoformat(),
            "customer_id": f"C{i % 7}",
            "amount": 5.0,
        }
        started = time.monotonic()
        assert client.post("/v1/score", json=body).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        ids.append(body["transaction_id"])
    for events in readers:
        got = []
        while len(got) < len(ids):
            got.append(events.next(timeout=20)[1]["transaction_id"])
        assert sorted(got) == sorted(ids)
    assert slowest < 2.0, f"a score request took {slowest:.2f} s"
    for sock, reader in stalled:
        reader.close(), sock.close()
    client.close()
