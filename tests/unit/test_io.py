from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.datasets.io import (
    infer_kind,
    parse_times,
    read_csv_columns,
    read_frame,
    stream_frame,
    write_frame,
)
from fraudstream.events import SchemaError, Transaction
from fraudstream.events.frame import (
    COLUMNS,
    extra_columns,
    extra_kind,
    flatten_extra,
    iter_records,
    normalize_frame,
)


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


# Flat extra.<name> columns: kinds, names, streaming out, files.


def canonical(n: int = 3, **columns: Any) -> pd.DataFrame:
    base = {
        "transaction_id": [f"t{i}" for i in range(n)],
        "timestamp": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
        "customer_id": [f"c{i}" for i in range(n)],
        "amount": [float(i) for i in range(n)],
    }
    return pd.DataFrame(base | columns)


def test_extra_columns_get_their_kind_and_follow_the_canonical_ones() -> None:
    frame = canonical(
        **{
            "extra.balance": [1, 2, 3],
            "extra.ratio": pd.array([0.5, None, 1.5], dtype="Float64"),
            "extra.flag": [True, False, True],
            "extra.count": pd.array([1, None, 3], dtype="Int64"),
            "extra.mixed_numbers": pd.Series([1, 2.5, None], dtype=object),
            "extra.dob": pd.to_datetime(["1950-01-02", None, "1999-12-31"]),
            "extra.seen": pd.to_datetime(["2024-01-01 10:00+02:00"] * 3, utc=True),
            "extra.day": pd.Series([datetime(1970, 1, 1).date(), None, None], dtype=object),
            "extra.state": ["NC", None, "NA"],
            "extra.job": pd.Series(["a", "b", "a"], dtype="category"),
            "extra.any": pd.Series(["x", 1, None], dtype=object),
            "extra._private2": ["p", "q", "r"],
        }
    )
    out = normalize_frame(frame)
    assert tuple(out.columns[: len(COLUMNS)]) == COLUMNS
    assert extra_columns(out) == [c for c in frame.columns if c.startswith("extra.")]
    kinds = {c: extra_kind(out[c]) for c in extra_columns(out)}
    assert kinds == {
        "extra.balance": "number", "extra.ratio": "number", "extra.flag": "number", "extra.count": "number",
        "extra.mixed_numbers": "number", "extra.dob": "time", "extra.seen": "time", "extra.day": "time",
        "extra.state": "text", "extra.job": "text", "extra.any": "text", "extra._private2": "text",
    }  # fmt: skip
    for column, kind in kinds.items():
        dtype = {"number": "float64", "time": "datetime64[us, UTC]", "text": "string"}[kind]
        assert str(out[column].dtype) == dtype, column
    assert out["extra.count"].isna().tolist() == [False, True, False]
    assert out["extra.flag"].tolist() == [1.0, 0.0, 1.0]
    assert out["extra.dob"].iloc[0] == pd.Timestamp("1950-01-02", tz="UTC")  # before 1990 is fine here
    assert out["extra.seen"].iloc[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert out["extra.state"].tolist() == ["NC", pd.NA, "NA"]
    assert out["extra.any"].tolist() == ["x", "1", pd.NA]
    assert normalize_frame(out).dtypes.equals(out.dtypes)


@pytest.mark.parametrize("name", ["extra.", "extra.1st", "extra.a-b", "extra.a.b", "extra.é"])
def test_an_extra_column_must_be_named_by_an_identifier(name: str) -> None:
    with pytest.raises(SchemaError, match="letter or underscore") as raised:
        normalize_frame(canonical(**{name: [1, 2, 3]}))
    assert raised.value.field == name


def test_other_unknown_columns_are_still_refused() -> None:
    with pytest.raises(SchemaError, match=r"'balance'.*unknown column.*extra\.<name>"):
        normalize_frame(canonical(balance=[1, 2, 3]))
    with pytest.raises(SchemaError, match=r"'extras\.x'"):
        normalize_frame(canonical(**{"extras.x": [1, 2, 3]}))


@pytest.mark.parametrize(
    ("values", "message", "row"),
    [
        (["ok", "x" * 129, "ok"], "at most 128 characters", 1),
        (["ok", "ok", "a\x00b"], "NUL", 2),
        ([1.0, float("inf"), 2.0], "finite", 1),
        (pd.Series(["a", {"k": 1}, None], dtype=object), "nested", 1),
        (pd.Series([[1], None, None], dtype=object), "nested", 0),
    ],
)
def test_bad_extra_values_are_named_with_their_row(values: Any, message: str, row: int) -> None:
    with pytest.raises(SchemaError, match=message) as raised:
        normalize_frame(canonical(**{"extra.x": values}))
    assert (raised.value.field, raised.value.row) == ("extra.x", row)


def test_extra_text_may_be_empty_or_128_characters() -> None:
    out = normalize_frame(canonical(**{"extra.x": ["", "y" * 128, None]}))
    assert out["extra.x"].str.len().tolist() == [0, 128, pd.NA]


def test_iter_records_folds_extra_columns_into_extra() -> None:
    frame = canonical(
        extra=[{"mcc": "5411", "step": 0}, None, None],
        **{
            "extra.step": [1, None, 3],
            "extra.dob": pd.to_datetime(["1988-03-09", None, None]),
            "extra.job": ["Psychologist, counselling", None, None],
        },
    )
    records = list(iter_records(normalize_frame(frame)))
    assert records[0]["extra"] == {
        "mcc": "5411",
        "step": 1.0,
        "dob": "1988-03-09T00:00:00+00:00",
        "job": "Psychologist, counselling",
    }
    assert frame["extra"].iloc[0] == {"mcc": "5411", "step": 0}  # the frame's own dict is untouched
    assert "extra" not in records[1]
    assert records[2]["extra"] == {"step": 3.0}
    tx = Transaction(**records[0])
    assert tx.extra["dob"] == "1988-03-09T00:00:00+00:00"
    assert json.loads(json.dumps(records[0]["extra"])) == records[0]["extra"]


@pytest.fixture()
def with_extras(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    rows = np.arange(n)
    return frame.assign(
        **{
            "extra.balance": np.where(rows % 4 == 0, np.nan, rows * 1.25),
            "extra.dob": pd.Series(pd.to_datetime("1960-05-01", utc=True) + pd.to_timedelta(rows, "D")),
            "extra.state": pd.Series(np.where(rows % 3 == 0, None, "NA"), dtype="string"),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_extra_columns_round_trip_with_their_kinds(
    with_extras: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    expected = normalize_frame(with_extras)
    path = tmp_path / f"traffic{suffix}"
    write_frame(with_extras, path)
    pd.testing.assert_frame_equal(read_frame(path), expected, check_exact=True)


def test_jsonl_carries_extra_columns_inside_extra(with_extras: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    write_frame(with_extras, path)
    first = json.loads(path.read_text().splitlines()[1])
    assert first["extra"]["balance"] == 1.25
    assert first["extra"]["dob"] == "1960-05-02T00:00:00+00:00"
    assert first["extra"]["state"] == "NA"
    assert first["extra"]["mcc"] == "5411"
    back = read_frame(path)
    assert extra_columns(back) == []
    assert back["extra"].iloc[1]["balance"] == 1.25


def test_infer_kind_of_csv_text() -> None:
    text = pd.Series(["1", None, "2.5"], dtype="string")
    assert infer_kind(text).tolist()[::2] == [1.0, 2.5]
    times = infer_kind(pd.Series(["2024-01-01", "2024-01-02 03:04:05+01:00", None], dtype="string"))
    assert times.iloc[1] == pd.Timestamp("2024-01-02 02:04:05", tz="UTC")
    words = pd.Series(["1", "two"], dtype="string")
    assert infer_kind(words) is words
    assert infer_kind(pd.Series([None, None], dtype="string")).dtype == "string"


def test_read_csv_columns_reads_blocks_up_to_a_limit(tmp_path: Path) -> None:
    path = tmp_path / "source.csv"
    rows = "".join(f"{i},NA,{i / 4}\n" for i in range(5000))
    path.write_bytes(("\ufeffid,country,value\r\n" + rows.replace("\n", "\r\n")).encode())
    types = {"id": pa.string(), "value": pa.float64(), "country": pa.string(), "absent": pa.string()}
    frame, missing = read_csv_columns(path, types, required=("id",), limit=1234)
    assert list(frame.columns) == ["id", "value", "country"]
    assert len(frame) == 1234 and missing == ["absent"]
    assert frame["country"].iloc[0] == "NA"
    assert str(frame["id"].dtype) == "string" and frame["value"].iloc[4] == 1.0
    whole, _ = read_csv_columns(path, types)
    assert len(whole) == 5000
    with pytest.raises(SchemaError, match=r"'absent'.*source\.csv"):
        read_csv_columns(path, types, required=("absent",))
    path.write_text("id,value\n1,2\n2,oops\n")
    with pytest.raises(ValueError, match=r"source\.csv.*oops"):
        read_csv_columns(path, types)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_csv_columns(tmp_path / "nowhere.csv", types)


def test_parse_times_picks_one_format_and_names_a_bad_row() -> None:
    formats = ("%m/%d/%Y %H:%M", "ISO8601")
    us = parse_times(pd.Series(["1/2/2015 3:04", None, "12/31/2015 23:59"]), "t", "f.csv", formats)
    assert us.tolist()[::2] == [
        pd.Timestamp("2015-01-02 03:04", tz="UTC"),
        pd.Timestamp("2015-12-31 23:59", tz="UTC"),
    ]
    iso = parse_times(pd.Series(["2015-02-24 22:55:49"]), "t", "f.csv", formats)
    assert iso.iloc[0] == pd.Timestamp("2015-02-24 22:55:49", tz="UTC")
    with pytest.raises(SchemaError, match=r"f\.csv row 1, field 't': '2015-02-24 22:55:49' is not a time"):
        parse_times(pd.Series(["1/2/2015 3:04", "2015-02-24 22:55:49"]), "t", "f.csv", formats)
    with pytest.raises(SchemaError, match=r"row 0.*'yesterday'"):
        parse_times(pd.Series(["yesterday"]), "t", "f.csv", formats)


def test_flatten_extra_pulls_named_fields_out_of_the_extra_dicts(tmp_path: Path) -> None:
    frame = canonical(
        extra=[{"balance": 10, "dob": "1988-03-09T00:00:00+00:00", "tag": 5}, None, {"balance": "n/a"}],
        **{"extra.kept": ["a", "b", "c"]},
    )
    flat = flatten_extra(frame, {"extra.balance": "number", "dob": "time", "tag": "text", "kept": "number"})
    assert flat["extra.balance"].iloc[0] == 10.0
    assert flat["extra.balance"].isna().tolist() == [False, True, True]  # "n/a" in a number field: missing
    assert flat["extra.dob"].iloc[0] == pd.Timestamp("1988-03-09", tz="UTC")
    assert flat["extra.tag"].tolist() == ["5", pd.NA, pd.NA]
    assert flat["extra.kept"].tolist() == ["a", "b", "c"]
    assert frame["extra"].iloc[0]["balance"] == 10 and "extra.balance" not in frame.columns
    inferred = flatten_extra(frame, ["balance", "tag"])
    assert extra_kind(inferred["extra.tag"]) == "number"
    assert extra_kind(inferred["extra.balance"]) == "text"  # 10 and "n/a": mixed
    path = tmp_path / "t.jsonl"
    write_frame(normalize_frame(canonical(**{"extra.step": [1.0, 2.0, 3.0]})), path)
    back = flatten_extra(read_frame(path), {"step": "number"})
    assert back["extra.step"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(SchemaError, match="letter or underscore"):
        flatten_extra(frame, ["a-b"])
