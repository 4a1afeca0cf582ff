"""The object-store archive on a local folder and a SQLite store: URLs, settings, batches and watermarks,
the settle time, and the labels read back. The same behaviour on S3 and PostgreSQL is in
tests/integration/test_archive_contract.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from fraudstream.archive import ArchiveError, open_location
from fraudstream.archive.location import check_url
from fraudstream.archive.reader import label_times, read_archive, read_dataset
from fraudstream.archive.writer import SCHEMAS, Archiver
from fraudstream.config import Settings
from fraudstream.events import Label, Transaction
from fraudstream.events.decision import DecisionRecord
from fraudstream.events.explanation import Explainer, Explanation, Wording
from fraudstream.storage import Store, open_store
from fraudstream.storage.rows import unpack_explanation

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=2)


def tx(i: int) -> Transaction:
    return Transaction(
        transaction_id=f"t{i:04d}",
        timestamp=T0 + timedelta(minutes=i),
        customer_id=f"c{i % 7}",
        amount=5.0 + i,
    )


def record(i: int, **kw: Any) -> DecisionRecord:
    values: dict[str, Any] = {
        "transaction_id": f"t{i:04d}",
        "customer_id": f"c{i % 7}",
        "timestamp": T0 + timedelta(minutes=i),
        "amount": 5.0 + i,
        "decision": "FLAG" if i % 10 == 0 else "APPROVE",
        "probability": 0.5 if i % 10 == 0 else 0.01,
        "reasons": [{"feature": "amount", "contribution": 0.2}],
        "rules": ["big_amount"] if i % 10 == 0 else [],
        "model_version": "m1",
        "rules_version": "3",
        "features": {"amount": 5.0 + i},
        "latency_ms": {"total": 1.5},
        "decided_at": T0 + timedelta(seconds=i),
    }
    values.update(kw)
    return DecisionRecord(**values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/fraud.db") as s:
        s.migrate()
        yield s


def archiver(store: Store, folder: Path, rows: int = 25, settle: float = 0.0) -> Archiver:
    return Archiver(
        store, open_location(str(folder), create=True), batch_rows=rows, settle=timedelta(seconds=settle)
    )


def ids(folder: Path, dataset: str) -> list[str]:
    return read_dataset(open_location(str(folder)), dataset).column("transaction_id").to_pylist()


# -- URLs and settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/p?secret_key=abc", "secret_key must not be in the URL"),
        ("ftp://host/folder", "not ftp://"),
        ("   ", "empty"),
    ],
)
def test_bad_archive_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ArchiveError, match=says):
        check_url(url)


def test_data_options_name_an_archive_by_url_or_by_its_folder(tmp_path: Path) -> None:
    from fraudstream.archive.location import archive_url

    # a command-line option parsed as a path turns s3://bucket into s3:/bucket: it is put back
    assert archive_url(Path("s3://bucket/prefix?scheme=http")) == "s3://bucket/prefix?scheme=http"
    assert archive_url("file:///srv/archive") == "file:///srv/archive"
    (tmp_path / "archive" / "decisions").mkdir(parents=True)
    assert archive_url(tmp_path / "archive") == str(tmp_path / "archive")
    (tmp_path / "transactions.parquet").touch()
    assert archive_url(tmp_path / "transactions.parquet") is None
    assert archive_url(tmp_path) is None  # a folder without the archive's datasets


def test_archive_url_setting_is_checked_and_named() -> None:
    assert Settings(archive_url="s3://bucket/prefix?endpoint_override=h:1").archive_url is not None
    assert Settings(archive_url="").archive_url is None
    with pytest.raises(ValidationError, match="archive_url") as caught:
        Settings(archive_url="gs://bucket/prefix")
    assert "s3://BUCKET/PREFIX" in str(caught.value)


# -- writing ---------------------------------------------------------------------------------------------


def test_a_pass_archives_each_decision_and_transaction_once_by_event_date(
    store: Store, tmp_path: Path
) -> None:
    store.decisions.save([record(i) for i in range(130)], [tx(i) for i in range(130)])
    result = archiver(store, tmp_path / "a").run(now=NOW)
    assert result.rows == {"decisions": 130, "transactions": 130, "labels": 0}
    assert result.batches == 6  # 130 decisions in batches of 25
    assert sorted(ids(tmp_path / "a", "decisions")) == [f"t{i:04d}" for i in range(130)]
    assert sorted(ids(tmp_path / "a", "transactions")) == [f"t{i:04d}" for i in range(130)]
    # by the transaction's event date: 22:00 + 130 minutes crosses midnight
    dates = {p.parent.name for p in (tmp_path / "a" / "decisions").rglob("*.parquet")}
    assert dates == {"date=2026-03-01", "date=2026-03-02"}
    # a second pass finds nothing new
    assert archiver(store, tmp_path / "a").run(now=NOW).batches == 0


def test_archived_decisions_keep_reasons_rules_and_versions(store: Store, tmp_path: Path) -> None:
    store.decisions.save([record(i) for i in range(3)], [tx(i) for i in range(3)])
    archiver(store, tmp_path / "a").run(now=NOW)
    rows = {
        r["transaction_id"]: r
        for r in read_dataset(open_location(str(tmp_path / "a")), "decisions").to_pylist()
    }
    first = rows["t0000"]
    assert first["decision"] == "FLAG" and first["rules"] == ["big_amount"]
    assert first["model_version"] == "m1" and first["rules_version"] == "3"
    assert first["reasons"] == '[{"contribution":0.2,"feature":"amount"}]'
    assert first["decided_at"] == T0
    bodies = read_dataset(open_location(str(tmp_path / "a")), "transactions").to_pylist()
    assert {b["transaction_id"]: b["amount"] for b in bodies}["t0002"] == 7.0
    assert Transaction.model_validate_json(bodies[0]["body"]).customer_id.startswith("c")


def test_archived_decisions_keep_their_explanation_and_its_words(store: Store, tmp_path: Path) -> None:
    words = Explainer("xgboost", 1, (
        Wording("amount", "amount", "amount {value}"),
        Wording("customer_count_1h", "payments in the hour", "{value} payment{s} in the hour"),
    ))  # fmt: skip
    values: dict[str, float | None] = {"amount": 250.0, "customer_count_1h": 3.0}
    made = Explanation(words, [1, 0], [0.75, -0.25], values)
    store.decisions.save(
        [record(0, features=values, explanation=made, aggregates={"bin_count_1h": 4.0}), record(1)],
        [tx(0), tx(1)],
    )
    archiver(store, tmp_path / "a").run(now=NOW)
    location = open_location(str(tmp_path / "a"))
    rows = {r["transaction_id"]: r for r in read_dataset(location, "decisions").to_pylist()}
    explained, plain = rows["t0000"], rows["t0001"]
    assert plain["explainer"] is None and plain["explanation"] is None and plain["aggregates"] is None
    assert json.loads(explained["aggregates"]) == {"bin_count_1h": 4.0}
    archived = {r["id"]: r["words"] for r in read_dataset(location, "explainers").to_pylist()}
    assert list(archived) == [explained["explainer"]] == [words.id]
    names = {r["id"]: r["names"] for r in read_dataset(location, "feature_sets").to_pylist()}
    vector = np.frombuffer(explained["feature_values"], "<f8")
    read = Explanation(
        Explainer.from_dict(json.loads(archived[words.id])),
        *unpack_explanation(explained["explanation"]),
        dict(zip(names[explained["feature_set"]], vector.tolist(), strict=True)),
    )
    assert read.as_dict() == made.as_dict() == store.decisions.get("t0000").explanation.as_dict()
    assert read.as_dict()["raises"][0]["sentence"].startswith("3 payments in the hour")


def test_decisions_stored_without_their_transaction_are_archived_alone(store: Store, tmp_path: Path) -> None:
    store.decisions.save([record(i) for i in range(4)], [tx(i) for i in range(2)])
    result = archiver(store, tmp_path / "a").run(now=NOW)
    assert result.rows["decisions"] == 4 and result.rows["transactions"] == 2


def test_rows_newer_than_the_settle_time_wait_for_a_later_pass(store: Store, tmp_path: Path) -> None:
    store.decisions.save([record(i) for i in range(10)], [tx(i) for i in range(10)])
    # decided at T0 + i seconds; with 300 s to settle, at T0 + 305 s only those up to T0 + 4 s are taken
    early = archiver(store, tmp_path / "a", settle=300).run(now=T0 + timedelta(seconds=305))
    assert early.rows["decisions"] == 5
    # a decision stamped before the others but committed after the first pass, within the settle time
    store.decisions.save([record(50, decided_at=T0 + timedelta(seconds=6))], [tx(50)])
    late = archiver(store, tmp_path / "a", settle=300).run(now=NOW)
    assert late.rows["decisions"] == 6
    assert sorted(ids(tmp_path / "a", "decisions")) == sorted([f"t{i:04d}" for i in range(10)] + ["t0050"])


def test_a_batch_left_pending_is_written_again_with_the_same_rows_and_names(
    store: Store, tmp_path: Path
) -> None:
    store.decisions.save([record(i) for i in range(60)], [tx(i) for i in range(60)])
    # a crashed archiver: it fixed its batch, wrote (here: nothing) and never finished it
    pending = store.archive.next_batch("decisions", before=NOW, rows=25)
    assert pending is not None and pending.number == 0
    assert store.archive.next_batch("decisions", before=NOW, rows=40) == pending  # handed out unchanged
    [mark] = store.archive.watermarks()
    assert mark.pending == pending.through and mark.done is None
    result = archiver(store, tmp_path / "a", rows=40).run(now=NOW)
    # the pending batch keeps its 25 rows; then 35 in one batch of at most 40
    assert result.batches == 2
    names = sorted(p.name for p in (tmp_path / "a" / "decisions").rglob("*.parquet"))
    assert names == ["part-0000000000.parquet", "part-0000000001.parquet"]
    assert sorted(ids(tmp_path / "a", "decisions")) == [f"t{i:04d}" for i in range(60)]
    mark = {m.stream: m for m in store.archive.watermarks()}["decisions"]
    assert mark.batch == 2 and mark.pending is None and mark.done is not None and mark.done.id == "t0059"


def test_a_finished_batch_is_not_finished_twice(store: Store) -> None:
    store.decisions.save([record(i) for i in range(3)], [tx(i) for i in range(3)])
    batch = store.archive.next_batch("decisions", before=NOW, rows=10)
    assert batch is not None
    assert store.archive.finish(batch) is True
    assert store.archive.finish(batch) is False
    assert store.archive.next_batch("decisions", before=NOW, rows=10) is None


def test_next_batch_refuses_an_unknown_stream_and_no_rows(store: Store) -> None:
    with pytest.raises(ValueError, match="stream"):
        store.archive.next_batch("alerts", before=NOW, rows=10)
    with pytest.raises(ValueError, match="rows"):
        store.archive.next_batch("decisions", before=NOW, rows=0)


# -- labels and reading back ------------------------------------------------------------------------------


def test_changed_verdicts_are_archived_again_and_the_newest_counts(store: Store, tmp_path: Path) -> None:
    store.decisions.save([record(i) for i in range(4)], [tx(i) for i in range(4)])
    day = timedelta(days=1)
    store.labels.apply(
        [
            Label(transaction_id="t0001", is_fraud=True, label_time=T0 + day, source="chargeback"),
            Label(transaction_id="t0002", is_fraud=False, label_time=T0 + day, source="analyst"),
            Label(transaction_id="t0003", is_fraud=False, label_time=T0 + day, source="analyst"),
        ]
    )
    archiver(store, tmp_path / "a").run(now=datetime.now(UTC))
    # the analyst changes their mind on t0003: fraud after all
    store.labels.apply(
        [Label(transaction_id="t0003", is_fraud=True, label_time=T0 + 2 * day, source="analyst")]
    )
    result = archiver(store, tmp_path / "a").run(now=datetime.now(UTC) + timedelta(seconds=1))
    assert result.rows["labels"] == 1
    frame = read_archive(str(tmp_path / "a"), label_delay=timedelta(days=7)).set_index("transaction_id")
    assert frame["is_fraud"].tolist() == [False, True, False, True]
    assert frame.loc["t0001", "label_time"] == T0 + day
    assert frame.loc["t0003", "label_time"] == T0 + 2 * day
    # legitimate: from the earlier of an analyst's verdict and the end of the label delay
    assert frame.loc["t0002", "label_time"] == T0 + day
    assert frame.loc["t0000", "label_time"] == T0 + timedelta(days=7)


def test_an_archive_with_no_labels_yet_reads_back_legitimate_after_the_label_delay(
    store: Store, tmp_path: Path
) -> None:
    store.decisions.save([record(i) for i in range(3)], [tx(i) for i in range(3)])
    archiver(store, tmp_path / "a").run(now=datetime.now(UTC))
    frame = read_archive(str(tmp_path / "a"), label_delay=timedelta(days=7))
    assert frame["is_fraud"].tolist() == [False, False, False]
    assert frame["label_time"].tolist() == [T0 + timedelta(minutes=i, days=7) for i in range(3)]


def test_fraud_wins_where_sources_disagree() -> None:
    t = T0 + timedelta(days=1)
    labels = pa.Table.from_pylist(
        [
            {
                "id": 1,
                "transaction_id": "a",
                "is_fraud": False,
                "label_time": t,
                "source": "bank",
                "received_at": t,
            },
            {
                "id": 2,
                "transaction_id": "a",
                "is_fraud": True,
                "label_time": t,
                "source": "case",
                "received_at": t,
            },
        ],
        schema=SCHEMAS["labels"],
    )
    known = label_times(labels)
    assert known.loc["a", "fraud"] == t and known.loc["a", "legit"] == t


def test_reading_an_empty_or_missing_archive_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="fraudstream archive run"):
        read_archive(str(tmp_path / "nothing-here"))


def test_an_archive_of_decisions_without_transactions_says_why_it_cannot_train(
    store: Store, tmp_path: Path
) -> None:
    store.decisions.save([record(i) for i in range(3)], [])  # as a replay stores them
    archiver(store, tmp_path / "a").run(now=datetime.now(UTC))
    with pytest.raises(ArchiveError, match=r"holds 3 decisions but no transactions: .*fraudstream replay"):
        read_archive(str(tmp_path / "a"))


# -- the archive as retraining's history ----------------------------------------------------------------


def test_the_archive_answers_retrainings_reads_as_the_store_does(store: Store, tmp_path: Path) -> None:
    from fraudstream.archive.history import ArchiveHistory

    store.decisions.save([record(i) for i in range(40)], [tx(i) for i in range(30)])
    day = timedelta(days=1)
    store.labels.apply(
        [
            Label(transaction_id="t0003", is_fraud=True, label_time=T0 + day, source="chargeback"),
            Label(transaction_id="t0004", is_fraud=False, label_time=T0 + day, source="analyst"),
        ]
    )
    archiver(store, tmp_path / "a", rows=7).run(now=datetime.now(UTC))
    archived = ArchiveHistory(str(tmp_path / "a"))
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=35)
    assert archived.span(start, end) == store.history.span(start, end)
    assert archived.span() == store.history.span()
    assert archived.feature_names() == store.history.feature_names() != {}
    for read in ("decisions", "transactions"):
        mine = pd.concat(getattr(archived, read)(start, end, chunk_rows=5), ignore_index=True)
        theirs = pd.concat(getattr(store.history, read)(start, end, chunk_rows=5), ignore_index=True)
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    assert archived.where == str(tmp_path / "a")


def test_the_archive_with_no_labels_yet_answers_retrainings_reads_as_the_store_does(
    store: Store, tmp_path: Path
) -> None:
    from fraudstream.archive.history import ArchiveHistory

    store.decisions.save([record(i) for i in range(5)], [tx(i) for i in range(5)])
    archiver(store, tmp_path / "a").run(now=datetime.now(UTC))
    archived = ArchiveHistory(str(tmp_path / "a"))
    start, end = T0, T0 + timedelta(days=1)
    for read in ("decisions", "transactions"):
        mine = pd.concat(getattr(archived, read)(start, end), ignore_index=True)
        theirs = pd.concat(getattr(store.history, read)(start, end), ignore_index=True)
        assert mine["fraud_label_time"].isna().all() and mine["legit_label_time"].isna().all()
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)


def test_retraining_from_an_empty_archive_says_to_run_the_archiver(tmp_path: Path) -> None:
    from fraudstream.archive.history import ArchiveHistory

    with pytest.raises(ArchiveError, match="fraudstream archive run"):
        ArchiveHistory(str(tmp_path / "empty")).span()


# -- the command line -------------------------------------------------------------------------------------


def test_archive_run_and_status_on_the_command_line(store: Store, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from fraudstream.cli import app

    store.decisions.save([record(i) for i in range(12)], [tx(i) for i in range(12)])
    env = {"FRAUD_DATABASE_URL": str(store.url), "FRAUD_ARCHIVE_SETTLE_SECONDS": "0", "FRAUD_ARCHIVE_URL": ""}
    missing = CliRunner().invoke(app, ["archive", "run"], env=env)
    assert missing.exit_code == 2 and "FRAUD_ARCHIVE_URL" in missing.stderr
    folder = tmp_path / "cli-archive"
    ran = CliRunner().invoke(
        app, ["archive", "run", "--url", str(folder), "--batch-rows", "5", "--json"], env=env
    )
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["rows"]["decisions"] == 12 and json.loads(ran.stdout)["batches"] == 3
    status = CliRunner().invoke(app, ["archive", "status", "--json"], env=env)
    assert status.exit_code == 0, status.stderr
    streams = {s["stream"]: s for s in json.loads(status.stdout)["streams"]}
    assert streams["decisions"]["next_batch"] == 3 and streams["decisions"]["pending_through"] is None
    assert streams["decisions"]["archived_through"]["id"] == "t0011"
    bad = CliRunner().invoke(app, ["archive", "run", "--url", "gs://bucket/x"], env=env)
    assert bad.exit_code == 2 and "s3://BUCKET/PREFIX" in bad.stderr


def test_following_reports_a_failing_pass_and_tries_again(store: Store, tmp_path: Path) -> None:
    store.decisions.save([record(i) for i in range(3)], [tx(i) for i in range(3)])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archive's folders should go")
    location = open_location(str(tmp_path / "archive"), create=True)
    broken = Archiver(store, open_location(str(blocked)), batch_rows=10, settle=timedelta(0))
    with pytest.raises(ArchiveError):
        broken.run()
    failures: list[Exception] = []
    broken.follow(0.01, stop=lambda: len(failures) >= 2, failed=failures.append)
    assert len(failures) == 2 and all(isinstance(f, ArchiveError) for f in failures)
    # the batch the failed passes chose is still pending, and a working archiver writes it
    [mark] = [m for m in store.archive.watermarks() if m.stream == "decisions"]
    assert mark.pending is not None and mark.pending.id == "t0002"
    result = Archiver(store, location, batch_rows=10, settle=timedelta(0)).run()
    assert result.rows["decisions"] == 3
