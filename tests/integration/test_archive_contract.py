"""The object-store archive against a real S3-compatible server (S3Proxy from ``make services``, marker
``s3``) and a local folder, over SQLite and PostgreSQL: every transaction archived exactly once, also with
two archivers at once and after ``kill -9`` of the archiving process mid-run; errors that say what to do;
and ``fraudstream train --data s3://...`` and ``retrain --data s3://...`` reading the archive back into
models."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.archive import ArchiveError, open_location
from fraudstream.archive.reader import read_archive, read_dataset
from fraudstream.archive.writer import Archiver
from fraudstream.cli import app
from fraudstream.events import Label, Transaction
from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store
from tests.history import FAST, production_history
from tests.integration.conftest import require

S3_ENDPOINT = os.environ.get("FRAUD_TEST_S3_ENDPOINT", "http://127.0.0.1:9010")
#: The fixed dev credentials of services/run.sh, unless the environment names others.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "fraudstream"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "fraudstream-dev-secret"),
}
T0 = datetime(2026, 5, 1, 20, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=3)


def s3_url(bucket: str, *, create: bool = True) -> str:
    endpoint = S3_ENDPOINT.removeprefix("http://")
    query = f"endpoint_override={endpoint}&scheme=http" + ("&allow_bucket_creation=true" if create else "")
    return f"s3://{bucket}/archive?{query}"


def drop_bucket(bucket: str) -> None:
    """Delete a test's bucket and its objects, so the server's folder does not grow. A bucket still
    holding an upload that a killed archiver left incomplete (invisible to readers; a store's lifecycle
    rule aborts such uploads) cannot be deleted, and is left."""
    from pyarrow import fs

    filesystem = fs.S3FileSystem(
        endpoint_override=S3_ENDPOINT.removeprefix("http://"), scheme="http", allow_bucket_deletion=True,
        access_key=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], secret_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    if filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
        return
    filesystem.delete_dir_contents(bucket)
    try:
        filesystem.delete_dir(bucket)
    except OSError as exc:
        if "BucketNotEmpty" not in str(exc):
            raise


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    require(S3_ENDPOINT, "The S3-compatible store (S3Proxy)")
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_archive(s3_credentials: None) -> Iterator[str]:
    """The URL of an archive in a new bucket on the S3 server (created on first write, then deleted)."""
    bucket = f"fs-test-{secrets.token_hex(5)}"
    yield s3_url(bucket)
    drop_bucket(bucket)


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.s3)])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty archive: a local folder, or a new bucket on the S3 server."""
    if request.param == "folder":
        return str(tmp_path / "archive")
    return str(request.getfixturevalue("s3_archive"))


def tx(i: int) -> Transaction:
    return Transaction(
        transaction_id=f"t{i:05d}",
        timestamp=T0 + timedelta(seconds=30 * i),
        customer_id=f"c{i % 13}",
        amount=1.0 + i,
    )


def record(i: int) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i:05d}",
        customer_id=f"c{i % 13}",
        timestamp=T0 + timedelta(seconds=30 * i),
        amount=1.0 + i,
        decision="BLOCK" if i % 50 == 0 else "APPROVE",
        probability=0.9 if i % 50 == 0 else 0.02,
        reasons=[{"feature": "amount", "contribution": 0.1}],
        rules=[],
        model_version="m7",
        rules_version="2",
        features={"amount": 1.0 + i},
        latency_ms={"total": 2.0},
        decided_at=T0 + timedelta(milliseconds=10 * i),
    )


def decide(store: Store, first: int, count: int) -> None:
    ids = range(first, first + count)
    store.decisions.save([record(i) for i in ids], [tx(i) for i in ids])


def archived_ids(url: str, dataset: str) -> list[str]:
    return read_dataset(open_location(url), dataset).column("transaction_id").to_pylist()


def expected(count: int) -> list[str]:
    return [f"t{i:05d}" for i in range(count)]


# -- the contract: local folder and S3, SQLite and PostgreSQL ----------------------------------------------


def test_each_transaction_is_archived_once_and_read_back_with_its_labels(
    store: Store, archive_url: str
) -> None:
    decide(store, 0, 300)
    store.labels.add(
        [Label(transaction_id=f"t{i:05d}", is_fraud=True, label_time=T0 + timedelta(days=1)) for i in (0, 50)]
    )
    archiver = Archiver(store, open_location(archive_url, create=True), batch_rows=40, settle=timedelta(0))
    first = archiver.run(now=datetime.now(UTC))
    assert first.rows == {"decisions": 300, "transactions": 300, "labels": 2}
    assert archiver.run(now=datetime.now(UTC)).batches == 0  # nothing new: nothing written
    decide(store, 300, 50)
    assert archiver.run(now=datetime.now(UTC)).rows["decisions"] == 50
    for dataset in ("decisions", "transactions"):
        assert sorted(archived_ids(archive_url, dataset)) == expected(350)
    blocks = read_dataset(open_location(archive_url), "decisions").to_pandas().set_index("transaction_id")
    assert blocks.loc["t00050", "decision"] == "BLOCK" and blocks.loc["t00050", "rules_version"] == "2"
    frame = read_archive(archive_url, label_delay=timedelta(days=7))
    assert len(frame) == 350 and frame["transaction_id"].is_unique
    assert sorted(frame.loc[frame["is_fraud"].astype(bool), "transaction_id"]) == ["t00000", "t00050"]


def test_two_archivers_at_once_write_each_transaction_once(store: Store, archive_url: str) -> None:
    decide(store, 0, 400)
    location = open_location(archive_url, create=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Archiver(store, location, batch_rows=15, settle=timedelta(0)).run(now=datetime.now(UTC))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    assert sorted(archived_ids(archive_url, "decisions")) == expected(400)
    assert sorted(archived_ids(archive_url, "transactions")) == expected(400)


def test_an_archiver_killed_mid_run_leaves_every_transaction_once_after_a_restart(
    store: Store, archive_url: str, tmp_path: Path
) -> None:
    total = 3000
    decide(store, 0, total)
    url = store.url.render_as_string(hide_password=False)
    env = os.environ | {
        "FRAUD_DATABASE_URL": url, "FRAUD_ARCHIVE_URL": archive_url, "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_ARCHIVE_SETTLE_SECONDS": "0",
    }  # fmt: skip
    command = [sys.executable, "-m", "fraudstream", "archive", "run", "--batch-rows", "10"]
    archiving = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and archiving.poll() is None:
            marks = {m.stream: m for m in store.archive.watermarks()}
            if "decisions" in marks and marks["decisions"].batch >= 5:
                break
            time.sleep(0.02)
        assert archiving.poll() is None, "the archiver ended before it could be killed mid-run"
        archiving.send_signal(signal.SIGKILL)
    finally:
        archiving.kill()
        archiving.wait(timeout=30)
    killed_at = {m.stream: m for m in store.archive.watermarks()}["decisions"]
    assert 5 <= killed_at.batch < total // 10  # stopped part-way
    partial = archived_ids(archive_url, "decisions")
    assert len(partial) == len(set(partial)) < total
    restarted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert restarted.returncode == 0, restarted.stderr
    for dataset in ("decisions", "transactions"):
        assert sorted(archived_ids(archive_url, dataset)) == expected(total)
    done = {m.stream: m for m in store.archive.watermarks()}["decisions"]
    assert done.pending is None and done.done is not None and done.done.id == f"t{total - 1:05d}"


def test_archive_follow_archives_what_arrives_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fraud.db"
    folder = str(tmp_path / "archive")
    with Store(url) as store:
        store.migrate()
        decide(store, 0, 20)
        env = os.environ | {
            "FRAUD_DATABASE_URL": url, "FRAUD_ARCHIVE_URL": folder, "FRAUD_DATA_DIR": str(tmp_path),
            "FRAUD_ARCHIVE_SETTLE_SECONDS": "0",
        }  # fmt: skip
        command = [sys.executable, "-m", "fraudstream", "archive", "run", "--follow", "--interval", "0.2"]
        following = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(set(archived_ids(folder, "decisions"))) < 20:
                time.sleep(0.1)
            decide(store, 20, 15)  # arrives while it follows
            while time.monotonic() < deadline and len(set(archived_ids(folder, "decisions"))) < 35:
                time.sleep(0.1)
            assert following.poll() is None
            following.send_signal(signal.SIGTERM)
            _, err = following.communicate(timeout=60)
        finally:
            following.kill()
    assert following.returncode == 0, err
    assert sorted(archived_ids(folder, "decisions")) == expected(35)
    assert "archived 20 decisions" in " ".join(err.split()) and "archived 15 decisions" in " ".join(
        err.split()
    )


# -- S3: errors that say what to do -----------------------------------------------------------------------


@pytest.mark.s3
def test_a_missing_bucket_says_to_create_it(s3_credentials: None, tmp_path: Path) -> None:
    url = s3_url(f"fs-missing-{secrets.token_hex(4)}", create=False)
    env = {"FRAUD_DATABASE_URL": f"sqlite:///{tmp_path}/f.db", "FRAUD_ARCHIVE_SETTLE_SECONDS": "0"}
    with Store(env["FRAUD_DATABASE_URL"]) as store:
        store.migrate()
        decide(store, 0, 3)
    result = CliRunner().invoke(app, ["archive", "run", "--url", url], env=env)
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "allow_bucket_creation=true" in result.stderr
    with pytest.raises(ArchiveError, match="does not exist"):
        read_archive(url)


@pytest.mark.s3
def test_wrong_or_missing_credentials_are_named(s3_archive: str, monkeypatch: pytest.MonkeyPatch) -> None:
    open_location(s3_archive, create=True)  # the bucket, empty
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ArchiveError, match="check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        read_archive(s3_archive)
    for name in S3_CREDENTIALS:
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with pytest.raises(ArchiveError, match="no credentials are set"):
        read_archive(s3_archive)


@pytest.mark.s3
def test_an_empty_archive_says_to_run_the_archiver(s3_archive: str) -> None:
    open_location(s3_archive, create=True)  # the bucket, empty
    with pytest.raises(ArchiveError, match="fraudstream archive run"):
        read_archive(s3_archive)


# -- reading back into training ---------------------------------------------------------------------------


@pytest.mark.s3
def test_train_and_retrain_read_the_archive_back_from_s3(
    s3_archive: str, tmp_path: Path, small_frame: pd.DataFrame, bundle_path: Path
) -> None:
    database = production_history(tmp_path, small_frame, bundle_path)
    url = s3_archive
    env: dict[str, Any] = {
        "FRAUD_DATABASE_URL": database, "FRAUD_ARCHIVE_URL": url, "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_ARCHIVE_SETTLE_SECONDS": "0",
    }  # fmt: skip
    archived = CliRunner().invoke(app, ["archive", "run", "--json"], env=env)
    assert archived.exit_code == 0, archived.stderr
    frame = read_archive(url, label_delay=timedelta(days=3))
    assert len(frame) == len(small_frame) and frame["transaction_id"].is_unique
    with Store(database) as store:
        assert int(frame["is_fraud"].sum()) == len(store.labels.fraud_since(T0 - timedelta(days=3650)))
    out = tmp_path / "from-archive.fsb"
    trained = CliRunner().invoke(
        app,
        ["train", "--data", url, "--out", str(out), "--models", "logistic", "--trials", "0",
         "--folds", "2", "--gap-days", "3", "--test-days", "5", "--json"],
        env=env,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    assert out.exists()
    # retrain: a challenger from the archive's history, on the feature vectors logged with the decisions
    folder = tmp_path / "retrain"
    retrained = CliRunner().invoke(
        app, ["retrain", "--data", url, *FAST, "--champion", str(bundle_path), "--out", str(folder)], env=env
    )
    assert retrained.exit_code == 0, retrained.stderr
    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["features"]["challenger"]["source"] == "logged"
    assert comparison["training"]["history_rows"] == len(small_frame)
    assert (folder / "challenger.fsb").exists()
