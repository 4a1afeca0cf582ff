"""``/v1/webhooks`` over HTTP: an endpoint's URL and event types checked (422 naming the field), its
secret shown once, pausing, changing and deleting it (404, 409), the delivery log with its filters and
pages, replays, and every change in the audit log under the admin key's name."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.apitools import Api, tx

HOOK = "https://hooks.example.com/fraud"


def add(client: TestClient, **fields: Any) -> Any:
    return client.post("/v1/webhooks", json={"url": HOOK, "events": ["label.created"]} | fields)


def field_of(answer: Any) -> list[Any]:
    assert answer.status_code == 422, answer.text
    return [
        error["loc"][-1] if error["loc"][-1] != 0 else error["loc"][-2] for error in answer.json()["detail"]
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "http://exa mple.com/x"}, "url"),
        ({"url": "http://example.com:99999/x"}, "url"),
        ({"url": "hooks.example.com/fraud"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["decision.deleted"]}, "events"),
        ({"description": "two\nlines"}, "description"),
    ],
)
def test_a_bad_endpoint_is_refused_naming_the_field(api: Api, fields: dict[str, Any], field: str) -> None:
    client, _, _ = api
    assert field in field_of(add(client, **fields))


def test_the_secret_is_shown_once_and_endpoints_change_pause_and_go(api: Api) -> None:
    client, _, _ = api
    created = add(client, events=["label.created", "*", "label.created"], description="the warehouse")
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["label.created", "*"]
    assert endpoint["enabled"] is True and endpoint["created_by"].startswith("anonymous")
    listed = client.get("/v1/webhooks").json()["items"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    path = f"/v1/webhooks/{endpoint['id']}"
    assert "enabled" in str(client.patch(path, json={}).json())  # nothing to change: 422 saying what may
    paused = client.patch(path, json={"enabled": False})
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    resumed = client.patch(path, json={"enabled": True, "events": ["case.verdict"]}).json()
    assert resumed["enabled"] is True and resumed["subscribed_at"] > endpoint["subscribed_at"]
    assert client.patch("/v1/webhooks/999999", json={"enabled": True}).status_code == 404
    assert client.delete(path).status_code == 200
    assert client.delete(path).status_code == 409
    assert client.patch(path, json={"enabled": True}).status_code == 409
    assert client.delete("/v1/webhooks/999999").status_code == 404
    assert client.get("/v1/webhooks").json()["items"] == []
    audit = client.get("/v1/audit", params={"subject": f"webhook:{endpoint['id']}"}).json()
    assert [entry["action"] for entry in audit] == [
        "webhook_delete", "webhook_change", "webhook_change", "webhook_add",
    ]  # fmt: skip
    assert audit[-1]["after"]["url"] == HOOK and "whsec_" not in str(audit)


def test_the_delivery_log_filters_pages_and_replays(api: Api) -> None:
    client, services, _ = api
    endpoint = add(client, events=["label.created"]).json()
    other = add(client, url=HOOK + "/b", events=["*"]).json()
    for i in range(3):
        assert client.post("/v1/score", json=tx(f"w{i}")).status_code == 200
        label = {"transaction_id": f"w{i}", "is_fraud": bool(i % 2), "label_time": tx(f"w{i}")["timestamp"]}
        assert client.post("/v1/labels", json=label).status_code == 200
    mine = client.get("/v1/webhooks/deliveries", params={"endpoint_id": endpoint["id"]}).json()
    assert len(mine["items"]) == 3 and mine["next_before"] is None
    assert {d["event_type"] for d in mine["items"]} == {"label.created"}
    page = client.get("/v1/webhooks/deliveries", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_before"] == page["items"][-1]["id"]
    rest = client.get("/v1/webhooks/deliveries", params={"limit": 50, "before": page["next_before"]}).json()
    assert [d["id"] for d in page["items"] + rest["items"]] == sorted(
        (d["id"] for d in page["items"] + rest["items"]), reverse=True
    )
    assert client.get("/v1/webhooks/deliveries", params={"type": "case.opened"}).json()["items"] == []
    assert client.get("/v1/webhooks/deliveries", params={"type": "nope"}).status_code == 422
    assert client.get("/v1/webhooks/deliveries", params={"status": "lost"}).status_code == 422
    first = mine["items"][-1]
    detail = client.get(f"/v1/webhooks/deliveries/{first['id']}").json()
    assert detail["event"]["id"] == first["event_id"] and detail["event"]["type"] == "label.created"
    assert detail["event"]["data"]["transaction_id"] == "w0"
    by_event = client.get("/v1/webhooks/deliveries", params={"event_id": first["event_id"]}).json()["items"]
    assert {d["endpoint_id"] for d in by_event} == {endpoint["id"], other["id"]}
    replayed = client.post(f"/v1/webhooks/deliveries/{first['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["replay_of"] == first["id"] and replayed.json()["event_id"] == first["event_id"]
    assert client.get("/v1/webhooks/deliveries/999999").status_code == 404
    assert client.post("/v1/webhooks/deliveries/999999/replay").status_code == 404
    client.delete(f"/v1/webhooks/{endpoint['id']}")
    assert client.post(f"/v1/webhooks/deliveries/{first['id']}/replay").status_code == 409
    assert services.store.webhooks.endpoint(endpoint["id"]).deleted_at is not None
