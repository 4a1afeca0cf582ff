"""The schema as SQLAlchemy Core tables: Core, not ORM, because every write is a bulk statement.

``migrations/versions`` creates exactly these tables; a test compares the two so they cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

TX_QUEUED = "queued"
TX_DECIDED = "decided"
TX_DEAD = "dead"
#: The condition of the partial index the burst detector reads: FLAGs are few, so it costs writes little.
FLAG_ONLY = "decision = 'FLAG'"
FLAG_INDEX = "ix_decisions_flag_customer_id_timestamp"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as aware UTC (naive taken as UTC), or None: for times a query computes (``max``,
    ``min``), which do not pass through :class:`UTCDateTime`."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back as aware UTC, on every dialect.

    Every value is bound as aware UTC. PostgreSQL's ``timestamptz`` column then never depends on the
    session time zone; SQLite has no time zones, and SQLAlchemy's SQLite ``DateTime`` writes the
    fields as text without the offset, so it stores naive UTC, whose text order is time order. Naive
    input is taken as UTC, as in :class:`~fraudstream.events.Transaction`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value)


#: Surrogate keys: BIGINT on servers, INTEGER on SQLite (only ``INTEGER PRIMARY KEY`` autoincrements there).
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

transactions = Table(
    "transactions",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("timestamp", UTCDateTime(), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("merchant_id", String(128), nullable=True),
    Column("device_id", String(128), nullable=True),
    Column("ip_address", String(128), nullable=True),
    Column("amount", Float(), nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("status", String(16), nullable=False),
    # A digest of the canonical body (see rows.body_hash): one id names one body, so a different body
    # under a known id is refused. NULL on rows stored before it existed: computed from the payload.
    Column("body_hash", String(32), nullable=True),
    Index("ix_transactions_timestamp", "timestamp"),
    Index("ix_transactions_customer_id", "customer_id"),
    # entity search and links (migration 0012): every transaction of a device, IP or merchant, by time
    Index("ix_transactions_device_id_timestamp", "device_id", "timestamp"),
    Index("ix_transactions_ip_address_timestamp", "ip_address", "timestamp"),
    Index("ix_transactions_merchant_id_timestamp", "merchant_id", "timestamp"),
)

# The feature names of a stored vector, once per distinct list instead of once per decision; the id is
# a digest of the list, so every process derives the same one without coordination.
feature_sets = Table(
    "feature_sets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("names", JSON(), nullable=False),
)

# The words of an explaining model (``fraudstream.events.explanation.Explainer``: each feature's
# description and sentence, the training data's medians) once per distinct set of words instead of once
# per decision; the id is a digest of them (migration 0021).
explainers = Table(
    "explainers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("words", JSON(), nullable=False),
)

# ``feature_values``: the vector in ``feature_sets.names`` order, little-endian float64, NaN where a
# feature was missing: 8 bytes a feature, and nothing to format or parse per value.
# The indexes end with (decided_at, transaction_id), the API's keyset order, so every filtered page is
# read straight off one index; the leading customer_id / decision columns serve lookups on those alone.
decisions = Table(
    "decisions",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("decided_at", UTCDateTime(), nullable=False),
    Column("timestamp", UTCDateTime(), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("amount", Float(), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("probability", Float(), nullable=False),
    Column("reasons", JSON(), nullable=False),
    Column("rules", JSON(), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("feature_set", String(32), nullable=False),
    Column("feature_values", LargeBinary(), nullable=False),
    Column("latency_ms", JSON(), nullable=False),
    # The challenger scored in shadow (migration 0009): its version, probability and decision, which
    # did not act; null when no challenger was configured.
    Column("shadow_version", String(64), nullable=True),
    Column("shadow_probability", Float(), nullable=True),
    Column("shadow_decision", String(16), nullable=True),
    # The rules version the decision used (migration 0013): a version number of rule_versions, or the short
    # hash of a rules file; null on rows stored before it.
    Column("rules_version", String(64), nullable=True),
    # The runtime aggregates the rules version declared, by name, as its rules read them (migration
    # 0020); null when it declared none.
    Column("aggregates", JSON(), nullable=True),
    # The decision's explanation (migration 0021): the id of its explainer's words in ``explainers``, and
    # the picked features' columns (int32, -1 for none) then their contributions (float64), little-endian;
    # null when no model explained it.
    Column("explainer", String(32), nullable=True),
    Column("explanation", LargeBinary(), nullable=True),
    Index("ix_decisions_decided_at_transaction_id", "decided_at", "transaction_id"),
    Index(
        "ix_decisions_customer_id_decided_at_transaction_id", "customer_id", "decided_at", "transaction_id"
    ),
    Index("ix_decisions_decision_decided_at_transaction_id", "decision", "decided_at", "transaction_id"),
    Index(
        FLAG_INDEX,
        "customer_id",
        "timestamp",
        "transaction_id",
        sqlite_where=text(FLAG_ONLY),
        postgresql_where=text(FLAG_ONLY),
    ),
)

# Decisions per minute, outcome and score bin (see ``fraudstream.storage.rollup``): what the charts read.
decision_minutes = Table(
    "decision_minutes",
    metadata,
    Column("minute", Integer(), primary_key=True, autoincrement=False),
    Column("decision", String(16), primary_key=True),
    Column("score_bin", Integer(), primary_key=True),
    Column("decisions", Integer(), nullable=False),
    Column("latency_count", Integer(), nullable=False),
    Column("latency_sum", Float(), nullable=False),
    Column("latency_max", Float(), nullable=True),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("transaction_id", String(128), nullable=False),
    Column("is_fraud", Boolean(), nullable=False),
    Column("label_time", UTCDateTime(), nullable=False),
    Column("source", String(32), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("transaction_id", "source", name="uq_labels_transaction_id_source"),
    Index("ix_labels_transaction_id", "transaction_id"),
    Index("ix_labels_received_at", "received_at"),
)

# The verdicts a source replaced (``labels`` holds each source's current one): the audit trail of labels.
label_history = Table(
    "label_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("label_id", Id, nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("is_fraud", Boolean(), nullable=False),
    Column("label_time", UTCDateTime(), nullable=False),
    Column("source", String(32), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("superseded_at", UTCDateTime(), nullable=False),
    Index("ix_label_history_transaction_id", "transaction_id"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("entity", String(160), nullable=False),
    Column("transaction_id", String(128), nullable=True),
    Column("payload", JSON(), nullable=False),
    Column("status", String(16), nullable=False),
    Index("ix_alerts_created_at", "created_at"),
    Index("ix_alerts_entity_created_at", "entity", "created_at"),
)

# One row per attempt to deliver an alert on a channel (webhook, email): the audit trail of paging.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_id", Id, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("attempted_at", UTCDateTime(), nullable=False),
    Column("ok", Boolean(), nullable=False),
    Column("error", Text(), nullable=True),
    Index("ix_alert_deliveries_alert_id", "alert_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("source", String(64), nullable=False),
    Column("payload", Text(), nullable=False),
    Column("reason", Text(), nullable=False),
)

queue = Table(
    "queue",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("key", String(160), nullable=True),
    Column("payload", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("acked_at", UTCDateTime(), nullable=True),
    Column("deliveries", Integer(), nullable=False, server_default="0"),
    Index("ix_queue_topic_acked_at_id", "topic", "acked_at", "id"),
)

# Each move of the registry's ``champion`` alias (promote, rollback, first registration): who, when, from
# which registry version to which, and the comparison it rested on. See fraudstream.registry.
model_promotions = Table(
    "model_promotions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("promoted_at", UTCDateTime(), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("to_version", String(32), nullable=False),
    Column("promoted_by", String(160), nullable=False),
    Column("comparison", JSON(), nullable=True),
    Index("ix_model_promotions_model_name_promoted_at", "model_name", "promoted_at"),
)

# Cases (migration 0010): FLAG, HOLD and BLOCK decisions grouped per customer (or another key) for analysts.
# At most one case per grouping value is not closed, which the partial unique index holds on both
# databases; ``case_cursor`` says how far the stored decisions have been grouped.
CASE_NOT_CLOSED = "status != 'closed'"
cases = Table(
    "cases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_key", String(32), nullable=False),
    Column("group_value", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("assignee", String(128), nullable=True),
    Column("expected_loss", Float(), nullable=False),
    Column("transactions", Integer(), nullable=False),
    Column("amount", Float(), nullable=False),
    Column("max_probability", Float(), nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("verdict", String(16), nullable=True),
    Index("ix_cases_status_expected_loss", "status", "expected_loss"),
    Index(
        "uq_cases_group_key_group_value_open",
        "group_key",
        "group_value",
        unique=True,
        sqlite_where=text(CASE_NOT_CLOSED),
        postgresql_where=text(CASE_NOT_CLOSED),
    ),
)
case_transactions = Table(
    "case_transactions",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("case_id", Id, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("probability", Float(), nullable=False),
    Column("amount", Float(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    Index("ix_case_transactions_case_id", "case_id"),
)
case_notes = Table(
    "case_notes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("case_id", Id, nullable=False),
    Column("author", String(128), nullable=False),
    Column("text", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_case_notes_case_id", "case_id"),
)
# Every analyst action: who (the key's name), what, on which subject ("case:12"), the state before and after.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subject", String(160), nullable=False),
    Column("before", JSON(), nullable=True),
    Column("after", JSON(), nullable=True),
    Index("ix_audit_log_subject_id", "subject", "id"),
)
case_cursor = Table(
    "case_cursor",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("decided_at", UTCDateTime(), nullable=False),
)

# Named API keys (migration 0011): the SHA-256 of each token, never the token; revoked keys keep their names.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    UniqueConstraint("name", name="uq_api_keys_name"),
    UniqueConstraint("token_sha256", name="uq_api_keys_token_sha256"),
)

# The analysts' rules, one row per saved version (migration 0013): the newest is in use; never changed.
rule_versions = Table(
    "rule_versions",
    metadata,
    Column("version", Integer(), primary_key=True, autoincrement=False),
    Column("text", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
)

# The object-store archive (migration 0014): per archived stream ("decisions", "labels"), the key of the
# last row archived, the number of the next batch and, while a batch is being written, the key it ends at.
# See fraudstream.storage.archive.
archive_watermarks = Table(
    "archive_watermarks",
    metadata,
    Column("stream", String(32), primary_key=True),
    Column("batch", Integer(), nullable=False),
    Column("done_at", UTCDateTime(), nullable=True),
    Column("done_key", String(128), nullable=True),
    Column("pending_at", UTCDateTime(), nullable=True),
    Column("pending_key", String(128), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Online/offline feature parity (migration 0015): each run of `fraudstream parity`, newest last.
parity_checks = Table(
    "parity_checks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("compared", Integer(), nullable=False),
    Column("differing", Integer(), nullable=False),
    Column("groups", JSON(), nullable=False),
)

# Rule snoozes (migration 0016): a rule kept from acting on one customer, device, IP or merchant until
# ``until`` (compared with each transaction's own time); lifting one sets ``lifted_at`` and keeps the row.
snoozes = Table(
    "snoozes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("field", String(32), nullable=False),
    Column("value", String(128), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("analyst", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("lifted_at", UTCDateTime(), nullable=True),
    Column("lifted_by", String(128), nullable=True),
    Index("ix_snoozes_rule_field_value", "rule", "field", "value"),
)

# The rule guard (migration 0017): each rule's expected hit rate, from a backtest of its rules version over
# the newest stored decisions (one row per version and rule, replaced by a newer backtest of the version),
# and the rules the guard moved to shadow. At most one guard per rule is in force (not released), which
# the partial unique index holds on both databases: of processes tripping a rule at once, one wins.
rule_baselines = Table(
    "rule_baselines",
    metadata,
    Column("rules_version", String(64), primary_key=True),
    Column("rule", String(128), primary_key=True),
    Column("hits", Integer(), nullable=False),
    Column("decisions", Integer(), nullable=False),
    Column("note", Text(), nullable=True),
    Column("period_start", UTCDateTime(), nullable=True),
    Column("period_end", UTCDateTime(), nullable=True),
    Column("computed_at", UTCDateTime(), nullable=False),
    Column("computed_by", String(128), nullable=False),
)
GUARD_IN_FORCE = "released_at IS NULL"
rule_guards = Table(
    "rule_guards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("rules_version", String(64), nullable=False),
    Column("tripped_at", UTCDateTime(), nullable=False),
    Column("hits", Integer(), nullable=False),
    Column("decisions", Integer(), nullable=False),
    Column("expected_hits", Integer(), nullable=False),
    Column("expected_decisions", Integer(), nullable=False),
    Column("multiple", Float(), nullable=False),
    Column("released_at", UTCDateTime(), nullable=True),
    Column("released_by", String(128), nullable=True),
    Column("release_reason", Text(), nullable=True),
    Index(
        "uq_rule_guards_rule_in_force",
        "rule",
        unique=True,
        sqlite_where=text(GUARD_IN_FORCE),
        postgresql_where=text(GUARD_IN_FORCE),
    ),
)
# Held payments (migration 0018): one row per HOLD decision, written with the decision; ``status`` is
# pending until a case's verdict or the timeout gives the hold its ``outcome`` (APPROVE: released,
# BLOCK: rejected), ``resolution`` saying which (verdict, timeout), once: the update that resolves it
# asks for a pending row. See fraudstream.storage.holds.
holds = Table(
    "holds",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("amount", Float(), nullable=False),
    Column("held_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("resolution", String(16), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Index("ix_holds_status_held_at", "status", "held_at"),
)
# How long resolved holds waited, counted per resolution, outcome and bucket of seconds (migration 0018),
# added to in the transaction that resolves them: what /metrics' histogram reads, in every process.
hold_waits = Table(
    "hold_waits",
    metadata,
    Column("resolution", String(16), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("bucket", Integer(), primary_key=True, autoincrement=False),
    Column("holds", Integer(), nullable=False),
    Column("seconds", Float(), nullable=False),
)
# Step-up challenges answered (migration 0018): the result a client posted for a CHALLENGE decision, once.
challenges = Table(
    "challenges",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("result", String(16), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=False),
    Column("answered_at", UTCDateTime(), nullable=False),
    Column("answered_by", String(128), nullable=False),
)
# Event webhooks (migration 0019; see fraudstream.storage.webhooks). Endpoints: where events go, and the
# secret that signs them; a deleted one keeps its row (``deleted_at``) for its deliveries' log.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("url", String(2048), nullable=False),
    Column("events", JSON(), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("enabled", Boolean(), nullable=False),
    Column("description", String(256), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    # since when it takes decision.created events: created, enabled again, or its types changed
    Column("subscribed_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
)
# Events, stored only when an endpoint subscribes to their type: ``body`` is the exact JSON every delivery
# sends and signs. ``event_id`` is derived from the fact, so one fact emitted twice is stored once.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject", String(160), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("emitted_at", UTCDateTime(), nullable=False),
    Column("body", Text(), nullable=False),
    UniqueConstraint("event_id", name="uq_webhook_events_event_id"),
    Index("ix_webhook_events_subject_type", "subject", "type"),
)
# One event to one endpoint: pending (claimed under a lease, tried again at ``next_attempt_at``), then
# delivered or failed. A replay is a new delivery of the same event (``replay_of``).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False),
    Column("endpoint_id", Id, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("last_status", Integer(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("replay_of", Id, nullable=True),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    Index("ix_webhook_deliveries_event_id", "event_id"),
)
# Every attempt of a delivery: the answer's status code (none when there was no answer), the error, how long.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("attempted_at", UTCDateTime(), nullable=False),
    Column("status_code", Integer(), nullable=True),
    Column("error", Text(), nullable=True),
    Column("duration_ms", Float(), nullable=False),
    Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)
# How far the stored decisions have been followed into decision.created events: the newest decided_at.
webhook_cursor = Table(
    "webhook_cursor",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("decided_at", UTCDateTime(), nullable=False),
)
