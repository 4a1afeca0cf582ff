"""Settings: one object, read from ``FRAUD_*`` environment variables, passed in explicitly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fraudstream.models.bands import ScoreBands

MIN_KEY_LENGTH = 16
"""The shortest API key accepted from the environment: a short one can be guessed."""
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def named_keys(text: str, kind: str) -> dict[str, str]:
    """The comma-separated keys of ``text`` by name: ``NAME:KEY`` names its key, a bare ``KEY`` is
    ``KIND-<its position>`` (``api-1``, ``admin-2``), a name that reveals nothing of the key. A key
    shorter than :data:`MIN_KEY_LENGTH`, a bad name or a name given twice is a ``ValueError``."""
    out: dict[str, str] = {}
    for position, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), start=1):
        name, colon, key = entry.partition(":")
        if not colon or not _KEY_NAME.fullmatch(name):
            name, key = f"{kind}-{position}", entry
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"key {name} is {len(key)} characters long; at least {MIN_KEY_LENGTH} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        if name in out:
            raise ValueError(f"the name {name!r} is given to two keys")
        out[name] = key
    return out


class Settings(BaseSettings):
    """Every knob fraudstream reads from the environment, with defaults that need no servers.

    Build one at the edge of the program (the CLI, a test) and pass it down; nothing reads the
    environment at import time.
    """

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_",
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,  # keys, passwords
    )

    data_dir: Path = Field(Path("fraudstream-data"), description="where generated data and models go")
    datasets_dir: Path = Field(Path("../shared/datasets"), description="where the public sample datasets are")
    model_path: Path | None = Field(None, description="model bundle to serve; default: data_dir/model.fsb")
    input_mapping: str | None = Field(
        None,
        description="YAML mapping of your own live events (as train --mapping reads a file); default: the "
        "mapping the served model was trained with, if any; 'none' reads canonical transactions only",
    )
    schema_registry_url: str | None = Field(
        None,
        description="schema registry (Confluent REST API) for Kafka messages in Avro: its base URL, e.g. "
        "http://127.0.0.1:8085/apis/ccompat/v7 for `make services`; JSON messages need none",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking server (http://host:port): training runs, the model registry"
    )
    model_uri: str | None = Field(
        None,
        description="model to serve from the MLflow registry: models:/NAME@ALIAS or models:/NAME/VERSION "
        "(downloaded once into data_dir/models/); a plain path works too. Overrides FRAUD_MODEL_PATH",
    )
    model_poll_seconds: float = Field(
        30.0,
        ge=0,
        description="how often a server started from a registry alias (FRAUD_MODEL_URI=models:/NAME@ALIAS) "
        "checks the alias and swaps a newly promoted version in without a restart (same feature set "
        "only); 0 never checks (a promotion through this server's API still swaps at once)",
    )
    challenger_uri: str | None = Field(
        None,
        description="challenger scored in shadow beside the served model: models:/NAME@challenger (or any "
        "registry URI) or a bundle path. It must read the served model's feature set; its probability and "
        "decision are stored with each decision (shadow_*), only the served model's decision acts",
    )
    challenger_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="A/B: the share of customers (0 to 1, by a stable hash of the customer id) whose "
        "transactions the challenger decides instead of the served model; the other model's probability "
        "and decision are then stored in shadow_*. 0 keeps the challenger in shadow only",
    )
    model_registry_name: str = Field(
        "fraudstream", min_length=1, description="registered model that --register and `models` act on"
    )
    promotion_gate: str = Field(
        "average_precision>=0,recall_at_1pct_fpr>0",
        description="`models promote --if-better` and `models gate`: conditions on the challenger's lead "
        "over the champion in comparison.json, METRIC>=MARGIN or METRIC>MARGIN, comma-separated, all must "
        "hold",
    )
    case_group_by: Literal["customer_id", "device_id", "ip_address", "merchant_id"] = Field(
        "customer_id",
        description="cases: a FLAG, HOLD or BLOCK joins the open case of the same value of this transaction "
        "field (a transaction without it groups by customer_id)",
    )
    case_priority: Literal["expected_loss", "amount", "probability"] = Field(
        "expected_loss",
        description="cases: what orders the queue: expected_loss (probability × amount, summed over the "
        "case), amount (summed) or probability (the highest)",
    )
    challenge_band: str | None = Field(
        None,
        description="LOW,HIGH: model probabilities LOW <= p < HIGH are decided CHALLENGE (step-up "
        "authentication) whatever the thresholds say, e.g. 0.5,0.8; unset: no band",
    )
    hold_band: str | None = Field(
        None,
        description="LOW,HIGH: model probabilities LOW <= p < HIGH are decided HOLD (the payment waits for "
        "an analyst's verdict); unset: no band. It may not overlap FRAUD_CHALLENGE_BAND",
    )
    hold_timeout_seconds: float = Field(
        86_400.0,
        gt=0,
        le=90 * 86_400,
        description="holds: a hold no verdict released within this many seconds of wall-clock time gets "
        "FRAUD_HOLD_DEFAULT",
    )
    hold_default: Literal["APPROVE", "BLOCK"] = Field(
        "BLOCK",
        description="holds: the outcome of a hold that times out, or whose case is closed inconclusive: "
        "APPROVE releases the payment, BLOCK rejects it",
    )
    hold_sweep_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how often serve and worker processes look for holds past FRAUD_HOLD_TIMEOUT_SECONDS "
        "(seconds)",
    )
    threads: int = Field(2, ge=1, description="threads for model training")
    seed: int = Field(7, description="random seed for data generation and training: same seed, same result")
    database_url: str | None = Field(None, description="default: SQLite file data_dir/fraudstream.db")
    broker_url: str = Field(
        "database://",
        description="database:// (durable, embedded), memory://, redis://host:port/db or kafka://host:port",
    )
    state_url: str = Field("memory://", description="feature state: memory:// or redis://host:port/db")
    rules_path: Path | None = Field(
        None,
        description="rules YAML; default: the packaged rules of the model's feature preset. With "
        "FRAUD_RULES_SOURCE=database, the first version stored when the database has none",
    )
    rules_source: Literal["file", "database"] = Field(
        "file",
        description="where running servers and workers read their rules: 'file' follows FRAUD_RULES_PATH; "
        "'database' uses the newest version saved through /v1/rules (seeded from the file when none is)",
    )
    rules_poll_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="how often a running process looks for a new rules version (with "
        "FRAUD_RULES_SOURCE=database), for rule snoozes set or lifted elsewhere and for rules the rule "
        "guard moved to shadow or an admin re-enabled, and checks the rules against the guard (seconds)",
    )
    rule_guard: bool = Field(
        True,
        description="the rule guard: a rule firing far above its backtested rate is moved to shadow and "
        "an alert names it (checked every FRAUD_RULES_POLL_SECONDS by servers and workers); false stops "
        "new trips, and rules it moved to shadow stay there until re-enabled",
    )
    rule_guard_multiple: float = Field(
        5.0,
        gt=1,
        le=1_000_000,
        description="the rule guard trips a rule whose hit rate in the window is at least this many times "
        "its backtested rate",
    )
    rule_guard_min_hits: int = Field(
        50, ge=1, description="the rule guard trips a rule only with at least this many hits in the window"
    )
    rule_guard_window: int = Field(
        10_000,
        ge=10,
        le=1_000_000,
        description="the rule guard counts each rule's hits among the newest this many stored decisions "
        "(those made under the rules version in use)",
    )
    rule_guard_baseline_decisions: int = Field(
        20_000,
        ge=10,
        le=10_000_000,
        description="a rules version saved through /v1/rules is backtested over the newest this many "
        "stored decisions (by event time): each rule's expected hit rate, for the rule guard",
    )
    rule_guard_exempt: str = Field(
        "",
        description="comma-separated names of rules the rule guard never moves to shadow (e.g. a rule for "
        "a rare attack the stored history holds no example of)",
    )
    api_keys: str = Field(
        "",
        description="comma-separated API keys acting as the analyst and ingest roles, each KEY or NAME:KEY "
        f"(at least {MIN_KEY_LENGTH} characters; see also 'fraudstream keys'); with none here, in "
        "FRAUD_ADMIN_KEYS or stored: no authentication",
    )
    admin_keys: str = Field(
        "",
        description="comma-separated API keys acting as the admin role, each KEY or NAME:KEY: everything, "
        "including changing the serving model (POST /v1/models/...)",
    )
    key_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="how long the API trusts what it read about a stored key (valid, its role, or unknown): "
        "a revoked key stops working within this many seconds",
    )
    rate_limits: bool = Field(
        True, description="answer 429 with Retry-After past the FRAUD_RATE_LIMIT_* limits (false: no limits)"
    )
    rate_limit_key: str = Field(
        "60000/minute", description="requests per API key (limits notation: N/second, N/minute, N/hour)"
    )
    rate_limit_address: str = Field(
        "60000/minute",
        description="requests per client address without a valid key (every request when no keys are set)",
    )
    rate_limit_failed_auth: str = Field(
        "30/minute",
        description="401/403 answers per client address; past it the address's requests without a valid key "
        "get 429 until the window ends",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="where the limits count: memory:// (this process) or redis://host:port/db (shared)",
    )
    host: str = Field("127.0.0.1", description="interface the API (and dashboard) bind to; 0.0.0.0 for all")
    read_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds a request has to arrive whole (headers and body) once its connection is open or "
        "its previous answer sent; a slower client's connection is closed",
    )
    max_connections: int = Field(
        1000, ge=1, description="connections (and requests in progress) the API serves at once; past it, 503"
    )
    forwarded_allow_ips: str = Field(
        "",
        description="proxies whose X-Forwarded-For gives the client's address (comma-separated addresses, "
        "or *); empty: none, the address is the connection's",
    )
    port: int = Field(8000, ge=1, le=65535, description="port of the API")
    batch_size: int = Field(500, ge=1, le=100_000, description="worker batch size")
    max_wait: float = Field(0.05, ge=0, description="worker: longest wait to fill a batch (seconds)")
    worker_threads: int = Field(
        1,
        ge=1,
        description="fraudstream worker: threads for a batch's compiled kernels (workers scale by processes)",
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="a dead worker's messages are redelivered after this"
    )
    max_body_bytes: int = Field(2_000_000, ge=1024, description="largest accepted request body")
    max_batch: int = Field(1000, ge=1, description="most transactions in one POST /v1/transactions")
    request_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds the API gives a request (beyond its own ?wait=) before answering 503 with "
        "Retry-After: a database or feature state that hangs holds no client longer",
    )
    score_max_wait: float = Field(
        0.0,
        ge=0,
        le=1,
        description="POST /v1/score under load: longest wait to batch requests (seconds; 0: none)",
    )
    consumer_group: str = Field("fraudstream", description="Redis/Kafka consumer group of the workers")
    claim_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="Redis: a message held this long by any consumer (one hung but alive) is taken over",
    )
    dead_after_seconds: float = Field(
        3.0,
        gt=0,
        le=300,
        description="Redis: a worker whose heartbeat stopped this long is dead; its pending messages are "
        "decided next, before new ones",
    )
    max_deliveries: int = Field(
        5, ge=1, description="a message delivered more often than this without an ack is dead-lettered"
    )
    stream_maxlen: int = Field(
        1_000_000, ge=1000, description="Redis: approximate cap on a stream's length (never trims unread)"
    )
    partition_key: str = Field("customer_id", description="Kafka: field messages are keyed by")
    publish_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Kafka: longest wait for the broker to take published messages before the publish "
        "fails (POST /v1/transactions then answers 503)",
    )
    alert_webhook_url: str | None = Field(None, description="Slack-compatible webhook for alerts")
    smtp_url: str | None = Field(None, description="smtp://user:password@host:port for e-mailed alerts")
    alert_email_from: str = Field("fraudstream@localhost", description="sender of alert e-mails")
    alert_email_to: str = Field("", description="comma-separated recipients of alert e-mails")
    alert_dedup_seconds: float = Field(
        600.0, ge=0, description="one alert per entity and kind within this window"
    )
    flag_burst: int = Field(3, ge=2, description="this many FLAGs for one entity within the window alert")
    flag_burst_seconds: float = Field(600.0, gt=0, description="the window of a burst of FLAGs")
    webhook_decisions: str = Field(
        "FLAG,CHALLENGE,HOLD,BLOCK",
        description="event webhooks: the outcomes whose stored decisions emit decision.created, "
        "comma-separated (e.g. FLAG,BLOCK), or 'all'",
    )
    webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="event webhooks: seconds an endpoint has to answer a delivery, connecting included; "
        "a slower answer counts as a failed attempt",
    )
    webhook_max_attempts: int = Field(
        16, ge=1, le=100, description="event webhooks: attempts per delivery before it is marked failed"
    )
    webhook_backoff_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="event webhooks: the wait after a delivery's first failed attempt, doubled after each "
        "further one up to FRAUD_WEBHOOK_MAX_BACKOFF_SECONDS",
    )
    webhook_max_backoff_seconds: float = Field(
        3600.0, gt=0, le=86_400, description="event webhooks: the longest wait between two attempts"
    )
    webhook_max_age_seconds: float = Field(
        86_400.0,
        gt=0,
        le=30 * 86_400,
        description="event webhooks: a delivery not delivered this long after it was queued is marked "
        "failed, its attempts left or not (a replay sends it again)",
    )
    webhook_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="event webhooks: how often each serve and worker process looks for due deliveries and "
        "for new decisions to emit",
    )
    webhook_senders: int = Field(
        2,
        ge=0,
        le=32,
        description="event webhooks: threads per serve or worker process posting deliveries; 0: this "
        "process neither sends nor follows decisions (others do: at least one process needs some)",
    )
    webhook_retention_days: float = Field(
        30.0,
        ge=1,
        le=3650,
        description="event webhooks: deliveries that ended (delivered or failed) are deleted with their "
        "attempts and events this many days later",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="the API the dashboard reads")
    dashboard_port: int = Field(8501, ge=1, le=65535, description="port of the Streamlit dashboard")
    stream_max_clients: int = Field(100, ge=1, description="GET /v1/stream: most streams open at once")
    stream_max_per_client: int = Field(
        5, ge=1, description="GET /v1/stream: most streams open at once per API key (or address)"
    )
    simulation_max_rows: int = Field(
        200_000,
        ge=1000,
        description="POST /v1/simulations: most transactions one simulation may generate or load",
    )
    drift_window: float = Field(
        3600.0,
        ge=60,
        le=7 * 86400,
        description="drift monitoring: the sliding window of scored transactions compared with the model's "
        "training data (seconds; counted in 60 slots, so it moves on by a sixtieth of itself)",
    )
    drift_psi_threshold: float = Field(
        0.2, gt=0, description="drift: a population stability index above this counts as drift and alerts"
    )
    drift_min_count: int = Field(
        500, ge=1, description="drift: no PSI while the window holds fewer transactions than this"
    )
    archive_url: str | None = Field(
        None,
        description="where `fraudstream archive` writes decisions, transactions and labels as date-"
        "partitioned Parquet: s3://bucket/prefix (any S3-compatible store; options as query parameters, "
        "e.g. ?endpoint_override=host:port&scheme=http; credentials from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY or the AWS default chain) or a local folder",
    )
    archive_batch_rows: int = Field(
        50_000,
        ge=1,
        le=5_000_000,
        description="archive: most decisions (or labels) in one batch; a batch writes one Parquet object "
        "per dataset and day it holds",
    )
    archive_settle_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="archive: rows stored less than this long ago wait for a later pass, so a row "
        "committed late (a batch commits after its rows are stamped; clocks of processes differ) is "
        "never passed over; make it longer than any such delay",
    )
    archive_interval_seconds: float = Field(
        60.0, gt=0, le=86_400, description="`fraudstream archive --follow`: seconds between passes"
    )
    spark_checkpoint: str | None = Field(
        None,
        description="spark stream: where the streaming query keeps its Kafka offsets and progress, so a "
        "restart carries on where it stopped (a folder, or hdfs://, s3a:// ... on a cluster); default "
        "data_dir/spark/checkpoint. One per query: two jobs on one checkpoint clash",
    )
    spark_jars: Path | None = Field(
        None,
        description="spark stream: folder of the Kafka connector's jars (services/spark/fetch.sh fills "
        ".services/spark/jars); unset: Spark fetches the pinned connector itself (spark.jars.packages)",
    )

    @field_validator("rate_limit_key", "rate_limit_address", "rate_limit_failed_auth")
    @classmethod
    def _one_rate(cls, value: str) -> str:
        """One limit in the ``limits`` library's notation, of at least one request."""
        from limits import parse_many

        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if len(items) != 1 or items[0].amount < 1:
            raise ValueError(f"expected one rate such as '600/minute' or '20/second', got {value!r}")
        return value

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _keys(cls, value: str, info: ValidationInfo) -> str:
        named_keys(value, "admin" if info.field_name == "admin_keys" else "api")  # short keys refused here
        return value

    @field_validator("archive_url")
    @classmethod
    def _archive_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from fraudstream.archive.location import check_url

        return check_url(value)

    @field_validator("promotion_gate")
    @classmethod
    def _gate(cls, value: str) -> str:
        from fraudstream.models.gate import parse_gate

        parse_gate(value)
        return value

    @field_validator("challenge_band", "hold_band")
    @classmethod
    def _band(cls, value: str | None, info: ValidationInfo) -> str | None:
        from fraudstream.models.bands import parse_band

        band = parse_band(value, f"FRAUD_{(info.field_name or '').upper()}")
        return None if band is None or value is None else value.strip()

    @field_validator("webhook_decisions")
    @classmethod
    def _webhook_decisions(cls, value: str) -> str:
        from fraudstream.events.transaction import DECISIONS

        if value.strip().lower() == "all":
            return "all"
        outcomes = [o.strip().upper() for o in value.split(",") if o.strip()]
        unknown = [o for o in outcomes if o not in DECISIONS]
        if not outcomes or unknown:
            raise ValueError(
                f"expected 'all' or some of {', '.join(DECISIONS)} comma-separated, got {value!r}"
            )
        return ",".join(dict.fromkeys(outcomes))

    @field_validator("rate_limit_storage")
    @classmethod
    def _limit_storage(cls, value: str) -> str:
        if value.partition("://")[0] not in ("memory", "redis", "rediss"):
            raise ValueError(f"expected memory:// or redis://host:port/db, got {value!r}")
        return value

    @model_validator(mode="after")
    def _share_needs_challenger(self) -> Settings:
        if self.challenger_share > 0 and not self.challenger_uri:
            raise ValueError(
                f"FRAUD_CHALLENGER_SHARE={self.challenger_share:g} routes customers to a challenger, "
                "but none is set: set FRAUD_CHALLENGER_URI (e.g. models:/fraudstream@challenger) "
                "or the share to 0"
            )
        return self

    @model_validator(mode="after")
    def _bands_apart(self) -> Settings:
        self.score_bands()  # overlapping bands are refused here
        return self

    def score_bands(self) -> ScoreBands:
        """FRAUD_CHALLENGE_BAND and FRAUD_HOLD_BAND: the score bands that become CHALLENGE and HOLD."""
        from fraudstream.models.bands import ScoreBands

        return ScoreBands.parse(self.challenge_band, self.hold_band)

    @property
    def bundle_path(self) -> Path:
        return self.model_path or self.data_dir / "model.fsb"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'fraudstream.db'}"

    @property
    def spark_checkpoint_location(self) -> str:
        return self.spark_checkpoint or str(self.data_dir / "spark" / "checkpoint")

    @property
    def webhook_outcomes(self) -> tuple[str, ...] | None:
        """The outcomes whose decisions emit ``decision.created``; ``None``: all of them."""
        return None if self.webhook_decisions == "all" else tuple(self.webhook_decisions.split(","))

    @property
    def alert_recipients(self) -> list[str]:
        return [r.strip() for r in self.alert_email_to.split(",") if r.strip()]

    @property
    def rule_guard_exempt_rules(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.rule_guard_exempt.split(",") if r.strip())

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(named_keys(self.api_keys, "api").values()) | self.admin_key_set

    @property
    def admin_key_set(self) -> frozenset[str]:
        return frozenset(named_keys(self.admin_keys, "admin").values())
