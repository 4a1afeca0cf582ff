"""``ApiClient``: everything the dashboard shows, read through the HTTP API (never the database).

So the dashboard runs anywhere the API is reachable. Failures become a :class:`DashboardError` whose
message is one line saying what is wrong and what to do, shown as-is on the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

ANALYST = "analyst"
#: A cheap endpoint that needs a key when keys are set: what signing in and the open-API check ask.
PROBE = "/v1/model"


class DashboardError(Exception):
    """The API could not answer; the message says why in one line, for the page."""


class ApiUnreachable(DashboardError):
    """Nothing answers at the API URL."""


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return str(detail)[:200]


class ApiClient:
    """A thin, typed-enough wrapper over the endpoints the dashboard reads and the one it writes."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiUnreachable(
                f"cannot reach the fraudstream API at {self.base_url} ({type(error).__name__}): start it "
                "with `fraudstream serve` or `fraudstream demo`, or pass --api-url"
            ) from None

    def _request(
        self, method: str, path: str, *, missing_ok: bool = False, text: bool = False, **kwargs: Any
    ) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code == 401:
            raise DashboardError(
                f"the API at {self.base_url} needs a key: run the dashboard with --api-key or FRAUD_API_KEY"
            )
        if response.status_code == 403:
            raise DashboardError(
                f"the API at {self.base_url} refused the key ({_detail(response)}): check --api-key / "
                "FRAUD_API_KEY, or sign in with a key of a role that may"
            )
        if response.status_code >= 400:
            raise DashboardError(f"{method} {path} failed with {response.status_code}: {_detail(response)}")
        return response.text if text else response.json()

    def keys_required(self) -> bool:
        """Whether the API turns away a request without a key, that is whether it has keys set. Asked
        without this client's key; a 401 counts as a failed authentication of this address there."""
        response = self._send("GET", PROBE, headers={"X-API-Key": ""})
        if response.status_code == 401:
            return True
        if response.status_code in (200, 404):
            return False
        raise DashboardError(
            f"the API at {self.base_url} answered {response.status_code}: {_detail(response)}"
        )

    def check_key(self) -> None:
        """Nothing when the API accepts this client's key; a :class:`DashboardError` saying why not."""
        response = self._send("GET", PROBE)
        if response.status_code in (401, 403):
            raise DashboardError("the API refused this key")
        if response.status_code not in (200, 404):
            raise DashboardError(
                f"the API at {self.base_url} answered {response.status_code}: {_detail(response)}"
            )

    def stats(self, window: float) -> dict[str, Any]:
        return dict(self._request("GET", "/v1/stats", params={"window": window}))

    def series(self, window: float, bucket: int) -> dict[str, Any]:
        return dict(self._request("GET", "/v1/stats/series", params={"window": window, "bucket": bucket}))

    def decisions(
        self, outcomes: list[str], customer_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` decisions of any of ``outcomes``, newest first (one request per outcome)."""
        items: list[dict[str, Any]] = []
        for outcome in outcomes:
            params: dict[str, Any] = {"decision": outcome, "limit": limit}
            if customer_id:
                params["customer_id"] = customer_id
            items.extend(self._request("GET", "/v1/decisions", params=params)["items"])
        items.sort(key=lambda d: (d["decided_at"], d["transaction_id"]), reverse=True)
        return items[:limit]

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's risk profile, or ``None`` when the API knows nothing about them."""
        found = self._request("GET", f"/v1/customers/{customer_id}", missing_ok=True)
        return None if found is None else dict(found)

    def alerts(self, limit: int = 50) -> list[dict[str, Any]] | None:
        """Recent alerts, or ``None`` when this API has no ``/v1/alerts`` yet."""
        found = self._request("GET", "/v1/alerts", params={"limit": limit}, missing_ok=True)
        return None if found is None else list(found)

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]] | None:
        """The newest dead letters, or ``None`` when this API has no ``/v1/dead-letters`` yet."""
        found = self._request("GET", "/v1/dead-letters", params={"limit": limit}, missing_ok=True)
        return None if found is None else list(found)

    def requeue(self, ids: list[int]) -> dict[str, Any]:
        """Send these dead letters back to the workers; what was requeued and what was left, and why."""
        return dict(self._request("POST", "/v1/dead-letters/requeue", json={"ids": ids}))

    def drift(self) -> dict[str, Any] | None:
        """The drift report (``GET /v1/drift``), or ``None`` when this API has none yet."""
        found = self._request("GET", "/v1/drift", missing_ok=True)
        return None if found is None else dict(found)

    def models(self) -> dict[str, Any] | None:
        """The registry's versions and recent promotions (``GET /v1/models``), or ``None`` when this API
        has none yet."""
        found = self._request("GET", "/v1/models", missing_ok=True)
        return None if found is None else dict(found)

    def compare(self, since: str) -> dict[str, Any] | None:
        """The champion/challenger comparison since ``since`` (``GET /v1/models/compare``), or ``None``
        when this API has none yet."""
        found = self._request("GET", "/v1/models/compare", params={"since": since}, missing_ok=True)
        return None if found is None else dict(found)

    def model(self) -> dict[str, Any] | None:
        found = self._request("GET", "/v1/model", missing_ok=True)
        return None if found is None else dict(found)

    def me(self) -> dict[str, Any]:
        """The signed-in key's name and role (``GET /v1/me``)."""
        return dict(self._request("GET", "/v1/me"))

    def cases(self, status: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The case queue, most urgent first (``GET /v1/cases``); open and in review by default."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return list(self._request("GET", "/v1/cases", params=params)["items"])

    def case(self, case_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/cases/{case_id}"))

    def case_report(self, case_id: int, fmt: str = "html") -> str:
        """The case whole (``GET /v1/cases/{id}/report``), as a self-contained HTML page or JSON."""
        return str(self._request("GET", f"/v1/cases/{case_id}/report", params={"format": fmt}, text=True))

    def claim(self, case_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/cases/{case_id}/claim"))

    def note(self, case_id: int, text: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/cases/{case_id}/notes", json={"text": text}))

    def verdict(self, case_id: int, verdict: str, note: str | None = None) -> dict[str, Any]:
        body = {"verdict": verdict, **({"note": note} if note else {})}
        return dict(self._request("POST", f"/v1/cases/{case_id}/verdict", json=body))

    def search(self, q: str) -> list[dict[str, Any]]:
        return list(self._request("GET", "/v1/entities", params={"q": q}))

    def entity(self, field: str, value: str) -> dict[str, Any] | None:
        found = self._request("GET", f"/v1/entities/{field}/{value}", missing_ok=True)
        return None if found is None else dict(found)

    def transaction(self, transaction_id: str) -> dict[str, Any] | None:
        """A transaction's status and stored decision (``GET /v1/transactions/{id}``), ``None`` if unknown."""
        found = self._request("GET", f"/v1/transactions/{transaction_id}", missing_ok=True)
        return None if found is None else dict(found)

    def snoozes(self) -> list[dict[str, Any]]:
        """The rule snoozes in force (``GET /v1/snoozes``), soonest to end first."""
        return list(self._request("GET", "/v1/snoozes")["items"])

    def snooze(self, rule: str, field: str, value: str, days: int, reason: str) -> dict[str, Any]:
        """Keep ``rule`` from acting on ``field`` = ``value`` for ``days`` (``POST /v1/snoozes``)."""
        body = {"rule": rule, "field": field, "value": value, "days": days, "reason": reason}
        return dict(self._request("POST", "/v1/snoozes", json=body))

    def lift(self, snooze_id: int) -> dict[str, Any]:
        """End a snooze now (``DELETE /v1/snoozes/{id}``)."""
        return dict(self._request("DELETE", f"/v1/snoozes/{snooze_id}"))

    def webhooks(self) -> list[dict[str, Any]]:
        """The event webhooks' endpoints (``GET /v1/webhooks``, admin role)."""
        return list(self._request("GET", "/v1/webhooks")["items"])

    def deliveries(
        self,
        *,
        endpoint_id: int | None = None,
        event_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Event deliveries, newest first, each with its attempts (``GET /v1/webhooks/deliveries``)."""
        wanted = {"endpoint_id": endpoint_id, "type": event_type, "status": status, "limit": limit}
        params = {name: value for name, value in wanted.items() if value is not None}
        return list(self._request("GET", "/v1/webhooks/deliveries", params=params)["items"])

    def replay(self, delivery_id: int) -> dict[str, Any]:
        """Send a delivery's event again (``POST /v1/webhooks/deliveries/{id}/replay``): the new delivery."""
        return dict(self._request("POST", f"/v1/webhooks/deliveries/{delivery_id}/replay"))

    def rules(self) -> dict[str, Any] | None:
        """The rules in use, their version and the saved versions (``GET /v1/rules``)."""
        found = self._request("GET", "/v1/rules", missing_ok=True)
        return None if found is None else dict(found)

    def backtest(self, rules: str | dict[str, Any], since: str) -> dict[str, Any]:
        """Candidate rules tried on the stored decisions of the last ``since``
        (``POST /v1/rules/backtest``)."""
        return dict(self._request("POST", "/v1/rules/backtest", json={"rules": rules, "since": since}))

    def guard(self) -> dict[str, Any] | None:
        """The rule guard's view of the rules in use (``GET /v1/rules/guard``); ``None`` without it."""
        found = self._request("GET", "/v1/rules/guard", missing_ok=True)
        return None if found is None else dict(found)

    def reenable(self, rule: str, reason: str) -> dict[str, Any]:
        """Let a rule the guard moved to shadow act again (``POST /v1/rules/guard/{rule}/reenable``)."""
        return dict(self._request("POST", f"/v1/rules/guard/{rule}/reenable", json={"reason": reason}))

    def label(self, transaction_id: str, is_fraud: bool, source: str = ANALYST) -> dict[str, Any]:
        """Record an analyst's verdict; a different one from the same source supersedes the earlier."""
        body = {
            "transaction_id": transaction_id,
            "is_fraud": is_fraud,
            "label_time": datetime.now(UTC).isoformat(),
            "source": source,
        }
        return dict(self._request("POST", "/v1/labels", json=body))
