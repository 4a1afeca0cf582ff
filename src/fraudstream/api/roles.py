"""Which roles may call which route.

:data:`ROLES` is the one place that says which roles may call which route. A ``/v1`` route missing
from it is open to admin keys alone and fails the roles test, so no route is served to a role nobody
decided on. Admin holds every role. ``ingest`` sends transactions, reads back their decisions and posts
the results of their step-up challenges; ``analyst`` reads everything, writes labels and cases, snoozes
rules and requeues dead letters (the dashboard's button); ``admin`` alone changes models and keys, and
the event webhooks.
"""

from __future__ import annotations

from fraudstream.storage.keys import Role

INGEST, ANALYST, ADMIN = frozenset({Role.INGEST}), frozenset({Role.ANALYST}), frozenset({Role.ADMIN})
SENDER = frozenset({Role.INGEST, Role.ANALYST})

#: (method, path) → the roles that may call it (admin always may).
ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/v1/score"): INGEST,
    ("POST", "/v1/transactions"): INGEST,
    ("GET", "/v1/transactions/{transaction_id}"): SENDER,
    ("GET", "/v1/decisions"): ANALYST,
    ("GET", "/v1/stats"): ANALYST,
    ("GET", "/v1/stats/series"): ANALYST,
    ("GET", "/v1/customers/{customer_id}"): ANALYST,
    ("POST", "/v1/labels"): ANALYST,
    ("GET", "/v1/labels/{transaction_id}"): ANALYST,
    ("GET", "/v1/simulations"): ANALYST,
    ("POST", "/v1/simulations"): ADMIN,  # synthetic traffic into the real queue and store
    ("GET", "/v1/model"): ANALYST,
    ("GET", "/v1/stream"): ANALYST,
    ("GET", "/v1/alerts"): ANALYST,
    ("GET", "/v1/reports/daily"): ANALYST,
    ("GET", "/v1/dead-letters"): ANALYST,
    ("POST", "/v1/dead-letters/requeue"): ANALYST,
    ("GET", "/v1/models"): ANALYST,
    ("POST", "/v1/models/promote"): ADMIN,
    ("POST", "/v1/models/rollback"): ADMIN,
    ("GET", "/v1/models/compare"): ANALYST,
    ("GET", "/v1/drift"): ANALYST,
    ("GET", "/v1/cases"): ANALYST,
    ("GET", "/v1/cases/{case_id}"): ANALYST,
    ("GET", "/v1/cases/{case_id}/report"): ANALYST,
    ("POST", "/v1/cases/{case_id}/claim"): ANALYST,
    ("POST", "/v1/cases/{case_id}/assign"): ANALYST,
    ("POST", "/v1/cases/{case_id}/notes"): ANALYST,
    ("POST", "/v1/cases/{case_id}/verdict"): ANALYST,
    ("POST", "/v1/cases/verdicts"): ANALYST,
    ("GET", "/v1/audit"): ANALYST,
    ("GET", "/v1/entities"): ANALYST,
    ("GET", "/v1/entities/{field}/{value}"): ANALYST,
    ("GET", "/v1/me"): frozenset(Role),
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys/{name}/revoke"): ADMIN,
    ("GET", "/v1/rules"): ANALYST,
    ("POST", "/v1/rules"): ADMIN,
    ("PUT", "/v1/rules"): ADMIN,
    ("POST", "/v1/rules/backtest"): ANALYST,
    ("GET", "/v1/rules/guard"): ANALYST,
    ("POST", "/v1/rules/guard/baseline"): ADMIN,
    ("POST", "/v1/rules/guard/{rule}/reenable"): ADMIN,
    ("GET", "/v1/snoozes"): ANALYST,
    ("POST", "/v1/snoozes"): ANALYST,
    ("DELETE", "/v1/snoozes/{snooze_id}"): ANALYST,
    ("POST", "/v1/challenges/{transaction_id}"): SENDER,  # the payment flow that ran the challenge
    ("GET", "/v1/holds"): ANALYST,
    ("GET", "/v1/webhooks"): ADMIN,  # endpoints hold signing secrets and reach other systems
    ("POST", "/v1/webhooks"): ADMIN,
    ("PATCH", "/v1/webhooks/{endpoint_id}"): ADMIN,
    ("DELETE", "/v1/webhooks/{endpoint_id}"): ADMIN,
    ("GET", "/v1/webhooks/deliveries"): ADMIN,
    ("GET", "/v1/webhooks/deliveries/{delivery_id}"): ADMIN,
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/replay"): ADMIN,
}


def roles_for(method: str, path: str) -> frozenset[Role]:
    """The roles that may call ``method path`` (a route template): from :data:`ROLES`, else admin
    alone (a route nobody decided on stays closed to the other roles)."""
    return ROLES.get((method, path), ADMIN)
