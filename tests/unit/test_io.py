from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.datasets.io import read_frame, stream_frame, write_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out = generate(GeneratorConfig(n_customers=100, n_merchants=20, days=5, fraud_rate=0.05))
    extras: list[Any] = [None, {"mcc": "5411", "risk": [1, 2.5]}, {"note": None, "nested": {"a": True}}]
    out["extra"] = [extras[i % 3] for i in range(len(out))]
    out.loc[out.index[:3], "country"] = "NA"  # Namibia, not a missing value
    return out


class FakeClock:
    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 100.0
        self.oversleep = oversleep
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds + self.oversleep


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_round_trip_is_exact(frame: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "nested" / "dir" / f"traffic{suffix}"
    write_frame(frame, path)
    assert path.is_file()
    back = read_frame(path)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back["extra"].iloc[1] == {"mcc": "5411", "risk": [1, 2.5]}
    assert back["extra"].iloc[0] is None
    assert (back["country"].iloc[:3] == "NA").all()


def test_extra_is_json_text_inside_parquet(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "traffic.parquet"
    write_frame(frame, path)
    raw = pd.read_parquet(path)
    assert raw["extra"].iloc[2] == '{"nested": {"a": true}, "note": null}'


def test_empty_frame_round_trips(frame: pd.DataFrame, tmp_path: Path) -> None:
    for suffix in (".parquet", ".csv", ".jsonl"):
        path = tmp_path / f"empty{suffix}"
        write_frame(frame.iloc[:0], path)
        assert len(read_frame(path)) == 0


def test_csv_from_elsewhere_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text(
        "transaction_id,timestamp,customer_id,amount,is_fraud\n"
        "t1,2025-01-01T00:00:00Z,c1,1.5,true\n"
        "t2,2025-01-01 00:00:01.5+00:00,c2,2,\n"
    )
    out = read_frame(path)
    assert out["timestamp"].iloc[1] == pd.Timestamp("2025-01-01 00:00:01.5", tz="UTC")
    assert out["is_fraud"].tolist() == [True, pd.NA]
    assert out["channel"].tolist() == ["other", "other"]


@pytest.mark.parametrize("name", ["traffic.txt", "traffic.json", "traffic"])
def test_unsupported_suffix_names_the_supported_ones(frame: pd.DataFrame, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.parquet, \.csv, \.jsonl"):
        write_frame(frame, tmp_path / name)
    with pytest.raises(ValueError, match=r"\.parquet, \.csv, \.jsonl"):
        read_frame(tmp_path / name)


def test_missing_and_corrupt_files_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        read_frame(tmp_path / "missing.parquet")
    for name, content in [("bad.parquet", "not parquet"), ("bad.jsonl", "{oops\n")]:
        (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=re.escape(name)):
            read_frame(tmp_path / name)
    (tmp_path / "bad.csv").write_text(
        "transaction_id,timestamp,customer_id,amount,is_fraud\nt,2025-01-01,c,1,maybe\n"
    )
    with pytest.raises(ValueError, match="is_fraud"):
        read_frame(tmp_path / "bad.csv")


def test_write_refuses_a_non_canonical_frame(tmp_path: Path) -> None:
    bad = pd.DataFrame({"transaction_id": ["t"], "timestamp": [datetime(2025, 1, 1, tzinfo=UTC)]})
    with pytest.raises(ValueError, match="customer_id"):
        write_frame(bad, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_stream_paces_batches_against_the_start_time(frame: pd.DataFrame) -> None:
    clock, sent = FakeClock(), []
    rows = frame.iloc[:95]
    count = stream_frame(
        rows,
        rate=100,
        batch_size=10,
        emit=lambda b: sent.append((clock.now - 100.0, b)),
        clock=clock,
        sleep=clock.sleep,
    )
    assert count == 95
    assert [len(b) for _, b in sent] == [10] * 9 + [5]
    assert [t for t, _ in sent] == pytest.approx([k / 10 for k in range(10)])
    assert [r["transaction_id"] for _, b in sent for r in b] == rows["transaction_id"].tolist()
    assert isinstance(sent[0][1][0]["timestamp"], datetime)


def test_stream_does_not_drift_when_sleep_overshoots(frame: pd.DataFrame) -> None:
    clock, times = FakeClock(oversleep=0.004), []
    stream_frame(
        frame.iloc[:200],
        rate=50,
        batch_size=5,
        emit=lambda b: times.append(clock.now - 100.0),
        clock=clock,
        sleep=clock.sleep,
    )
    lateness = [t - k * 0.1 for k, t in enumerate(times)]
    assert len(times) == 40
    assert max(lateness) <= 0.004 + 1e-9


def test_stream_stops_after_duration(frame: pd.DataFrame) -> None:
    clock, sizes = FakeClock(), []
    count = stream_frame(
        frame,
        rate=50,
        batch_size=7,
        duration=1.0,
        emit=lambda b: sizes.append(len(b)),
        clock=clock,
        sleep=clock.sleep,
    )
    assert count == 50 == sum(sizes)
    assert clock.now - 100.0 < 1.0
    assert stream_frame(frame, rate=50, duration=0, emit=sizes.append, clock=clock, sleep=clock.sleep) == 0


def test_stream_stops_when_emit_cannot_keep_up_with_duration(frame: pd.DataFrame) -> None:
    clock = FakeClock()

    def slow_emit(batch: list[dict[str, Any]]) -> None:
        clock.now += 0.6

    count = stream_frame(
        frame, rate=1000, batch_size=100, duration=1.0, emit=slow_emit, clock=clock, sleep=clock.sleep
    )
    assert count == 200
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"duration": -1}, "duration"),
    ],
)
def test_stream_rejects_bad_arguments(frame: pd.DataFrame, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"rate": 10.0, "emit": print, **kwargs}
    with pytest.raises(ValueError, match=message):
        stream_frame(frame, **arguments)
