"""A user's own CSV or Parquet file through a YAML mapping: the mapping's checks, and files end to end."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraudstream.config import Settings
from fraudstream.datasets.generic import (
    MappingError,
    extra_column_name,
    load_generic,
    parse_mapping,
    read_mapping,
)
from fraudstream.datasets.io import BadRowError
from fraudstream.datasets.source import load_source
from fraudstream.events.frame import COLUMNS, extra_columns, extra_kind, iter_records, normalize_frame

MAPPING = """\
# mapping.yaml
timestamp: event_time          # required
timestamp_format: "%d/%m/%Y %H:%M"
customer_id: card_id
amount: amt
is_fraud: fraud_flag
label_delay: 7d
merchant_id: payee
drop: [row_number]
"""
CSV = """\
row_number,event_time,card_id,amt,fraud_flag,payee,zip,birth,amount (EUR),note,Unnamed: 0
1,01/03/2024 12:00,0042,10.5,0,m1,02134,1980-01-02,9.1,hello,7
2,01/03/2024 12:05,c2,3,yes,m2,10001,1990-05-06,2.7,,8
3,28/02/2024 09:00,0042,7,,m1,02134,1980-01-02,6.3,x,9
"""
BASE = {"timestamp": "t", "customer_id": "c", "amount": "a"}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    data, mapping = tmp_path / "cards.csv", tmp_path / "mapping.yaml"
    data.write_text(CSV)
    mapping.write_text(MAPPING)
    return data, mapping


def settings(tmp_path: Path) -> Settings:
    return Settings().model_copy(update={"data_dir": tmp_path, "datasets_dir": tmp_path / "none"})


def test_a_csv_file_end_to_end_through_load_source(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, mapping = files
    frame = load_source(settings(tmp_path), data=data, mapping=mapping)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert extra_columns(frame) == [
        "extra.zip",
        "extra.birth",
        "extra.amount_EUR",
        "extra.note",
        "extra.Unnamed_0",
    ]
    assert normalize_frame(frame).dtypes.equals(frame.dtypes)
    assert frame["transaction_id"].tolist() == ["cards-2", "cards-0", "cards-1"]  # sorted by time
    assert frame["timestamp"].tolist() == [
        ts("2024-02-28 09:00"),
        ts("2024-03-01 12:00"),
        ts("2024-03-01 12:05"),
    ]
    assert frame["customer_id"].tolist() == ["0042", "0042", "c2"]  # text, leading zeros kept
    assert frame["amount"].tolist() == [7.0, 10.5, 3.0]
    assert frame["merchant_id"].tolist() == ["m1", "m1", "m2"]
    assert frame["is_fraud"].tolist() == [pd.NA, False, True]
    assert frame["label_time"].isna().tolist() == [True, False, False]
    assert (frame["label_time"] - frame["timestamp"]).iloc[1:].eq(timedelta(days=7)).all()
    kinds = {c: extra_kind(frame[c]) for c in extra_columns(frame)}
    assert kinds == {
        "extra.zip": "number",  # guessed from the digits; see the types option below
        "extra.birth": "time",
        "extra.amount_EUR": "number",
        "extra.note": "text",
        "extra.Unnamed_0": "number",
    }
    assert frame["extra.birth"].iloc[0] == ts("1980-01-02")
    record = next(iter_records(frame))
    assert record["extra"] == {
        "zip": 2134.0,
        "birth": "1980-01-02T00:00:00+00:00",
        "amount_EUR": 6.3,
        "note": "x",
        "Unnamed_0": 9.0,
    }


def test_types_override_the_guess_and_drop_removes_columns(files: tuple[Path, Path]) -> None:
    data, _ = files
    mapping = parse_mapping(
        {
            **{"timestamp": "event_time", "customer_id": "card_id", "amount": "amt"},
            "timestamp_format": "%d/%m/%Y %H:%M",
            "drop": ["row_number", "note", "Unnamed: 0", "fraud_flag"],
            "types": {"zip": "text", "birth": "time:%Y-%m-%d", "amount (EUR)": "number"},
        }
    )
    frame = load_generic(data, mapping, limit=2)
    assert extra_columns(frame) == ["extra.payee", "extra.zip", "extra.birth", "extra.amount_EUR"]
    assert frame["extra.zip"].tolist() == ["02134", "10001"]
    assert frame["extra.birth"].iloc[1] == ts("1990-05-06")
    assert frame["is_fraud"].isna().all() and frame["label_time"].isna().all()


def test_a_parquet_file_end_to_end_through_load_source(tmp_path: Path) -> None:
    data = tmp_path / "export.parquet"
    pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-05-01 10:00", "2024-05-01 09:00"]),  # naive: UTC
            "user": [1001, 1002],
            "value": [12.5, 0.0],
            "label": [True, False],
            "charged_back": pd.to_datetime(["2024-05-20", None], utc=True),
            "id": ["a", "b"],
            "lat": [48.85, 51.5],
            "lon": [2.35, -0.12],
            "kind": ["ONLINE", "pos"],
            "score": pd.array([3, None], dtype="Int64"),
            "segment": pd.Series(["gold", "silver"], dtype="category"),
            "opened": pd.to_datetime(["2020-01-01", "2021-06-01"], utc=True),
        }
    ).to_parquet(data)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "timestamp: ts\ncustomer_id: user\namount: value\nis_fraud: label\nlabel_time: charged_back\n"
        "transaction_id: id\nlatitude: lat\nlongitude: lon\nchannel: kind\n"
    )
    frame = load_source(settings(tmp_path), data=data, mapping=mapping)
    assert frame["transaction_id"].tolist() == ["b", "a"]
    assert frame["customer_id"].tolist() == ["1002", "1001"]
    assert frame["timestamp"].iloc[0] == ts("2024-05-01 09:00")
    assert frame["label_time"].tolist()[::-1] == [ts("2024-05-20"), pd.NaT]
    assert frame["channel"].tolist() == ["pos", "online"]
    assert (frame["latitude"].iloc[1], frame["longitude"].iloc[1]) == (48.85, 2.35)
    assert extra_columns(frame) == ["extra.score", "extra.segment", "extra.opened"]
    assert [extra_kind(frame[c]) for c in extra_columns(frame)] == ["number", "text", "time"]
    assert frame["extra.score"].isna().tolist() == [True, False]
    assert len(load_generic(data, mapping, limit=1)) == 1


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        (["1700000000", "1700000060.5"], None, ["2023-11-14 22:13:20", "2023-11-14 22:14:20.5"]),
        (["1700000000000", "1700000060500"], "ms", ["2023-11-14 22:13:20", "2023-11-14 22:14:20.5"]),
        (
            ["2024-01-01T10:00:00+02:00", "2024-01-01 09:00:00"],
            None,
            ["2024-01-01 08:00", "2024-01-01 09:00"],
        ),
    ],
)
def test_epoch_and_iso_times(
    tmp_path: Path, values: list[str], unit: str | None, expected: list[str]
) -> None:
    data = write_csv(tmp_path, "t,c,a\n" + "".join(f"{v},c,1\n" for v in values))
    frame = load_generic(data, {**BASE, **({"timestamp_unit": unit} if unit else {})})
    assert frame["timestamp"].tolist() == [ts(e) for e in expected]


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("mapping", "key", "message"),
    [
        ({**BASE, "merchant": "m"}, "merchant", "not a canonical field or an option; fields are"),
        ({"timestamp": "t", "amount": "a"}, "customer_id", "required: name the column"),
        ({**BASE, "customer_id": None}, "customer_id", "required"),
        ({**BASE, "amount": ["a", "b"]}, "amount", "must be the name of a column"),
        ({**BASE, "is_fraud": "f", "label_time": "l", "label_delay": "7d"}, "label_delay", "either"),
        ({**BASE, "label_delay": "7d"}, "label_delay", "needs is_fraud"),
        ({**BASE, "is_fraud": "f", "label_delay": "soon"}, "label_delay", "duration such as 7d"),
        ({**BASE, "is_fraud": "f", "label_delay": "-2d"}, "label_delay", "duration"),
        ({**BASE, "latitude": "lat"}, "longitude", "together"),
        ({**BASE, "timestamp_unit": "minutes"}, "timestamp_unit", "s, ms, us, ns"),
        ({**BASE, "timestamp_format": "dd/mm/yyyy"}, "timestamp_format", "strftime"),
        ({**BASE, "types": {"x": "date"}}, "types", "number, text, time or time:<strftime format>"),
        ({**BASE, "drop": {"x": 1}}, "drop", "list of column names"),
        ({**BASE, "delimiter": ";;"}, "delimiter", "one character"),
    ],
)
def test_mapping_errors_name_the_key(mapping: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(MappingError, match=message) as raised:
        parse_mapping(mapping, source="m.yaml")
    assert raised.value.key == key
    assert str(raised.value).startswith(f"m.yaml: key {key!r}: ")


def test_mapping_files_that_are_not_mappings(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("- timestamp\n- amount\n")
    with pytest.raises(ValueError, match=r"m\.yaml must be a YAML mapping of keys to column names"):
        read_mapping(path)
    path.write_text("timestamp: [unclosed\n")
    with pytest.raises(ValueError, match=r"m\.yaml is not valid YAML"):
        read_mapping(path)
    with pytest.raises(FileNotFoundError, match=r"no such mapping file: .*absent\.yaml"):
        read_mapping(tmp_path / "absent.yaml")
    assert read_mapping(write_mapping(tmp_path, "timestamp: t\ncustomer_id: c\namount: a\n")).fields == BASE


def write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_columns_absent_from_the_file_are_named_with_their_key(tmp_path: Path) -> None:
    data = write_csv(tmp_path, "t,c,a,b c,b-c\n2024-01-01,c,1,x,y\n")
    with pytest.raises(MappingError, match=r"key 'merchant_id': column 'payee' is not in data\.csv .*'b c'"):
        load_generic(data, {**BASE, "merchant_id": "payee"})
    with pytest.raises(MappingError, match=r"key 'drop': column 'row' is not in data\.csv"):
        load_generic(data, {**BASE, "drop": "row"})
    with pytest.raises(
        MappingError, match=r"key 'drop': columns 'b c' and 'b-c' would both become extra\.b_c"
    ):
        load_generic(data, BASE)
    with pytest.raises(MappingError, match=r"key 'types': column 'a' is not an extra column"):
        load_generic(data, {**BASE, "drop": "b c", "types": {"a": "text"}})
    assert extra_columns(load_generic(data, {**BASE, "drop": ["b c"]})) == ["extra.b_c"]


@pytest.mark.parametrize(
    ("text", "mapping", "match"),
    [
        (
            "t,c,a\n01/02/2024 10:00,c,1\n31/02/2024 10:00,c,1\n",
            {"timestamp_format": "%d/%m/%Y %H:%M"},
            r"data\.csv line 3, key 'timestamp', column 't': '31/02/2024 10:00' is not a time "
            r"in the format '%d/%m/%Y %H:%M'; fix the row, or pass --skip-bad-rows",
        ),
        (
            "t,c,a\n2024-01-01,c,1\nyesterday,c,1\n",
            {},
            r"line 3, key 'timestamp', column 't': 'yesterday' is not an ISO 8601 time \(set timestamp_",
        ),
        (
            "t,c,a\n2024-01-01,c,1\n2024-01-01,c,lots\n",
            {},
            r"line 3, key 'amount', column 'a': 'lots' is not a number",
        ),
        (
            "t,c,a,f\n2024-01-01,c,1,1\n2024-01-01,c,1,maybe\n",
            {"is_fraud": "f"},
            r"line 3, key 'is_fraud', column 'f': 'maybe' is not a label",
        ),
        (
            "t,c,a,ch\n2024-01-01,c,1,web\n",
            {"channel": "ch"},
            r"line 2, key 'channel', column 'ch': 'web' is not a channel \(online, pos",
        ),
        (
            "t,c,a\n2024-01-01,c,1\n2024-01-01,c,-5\n",
            {},
            r"data\.csv line 3, key 'amount', column 'a': must be",
        ),
        ("t,c,a\n1980-01-01,c,1\n", {}, r"line 2, key 'timestamp', column 't': must be between 1990"),
        (
            "t,c,a,z\n2024-01-01,c,1,x\n",
            {"types": {"z": "number"}},
            r"line 2, key 'types', column 'z': 'x' is not a number",
        ),
        (
            "t,c,a\n1700000000,c,1\n",
            {"timestamp_unit": "ms"},
            r"line 2, key 'timestamp', column 't': must be between 1990",
        ),
    ],
)
def test_values_that_do_not_fit_are_named_with_their_line_key_and_column(
    tmp_path: Path, text: str, mapping: dict[str, Any], match: str
) -> None:
    data = write_csv(tmp_path, text)
    with pytest.raises(BadRowError, match=match):
        load_generic(data, {**BASE, **mapping})


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'data\.xlsx'.*\.csv, \.parquet"):
        load_generic(tmp_path / "data.xlsx", BASE)
    with pytest.raises(FileNotFoundError, match=r"data\.csv"):
        load_generic(tmp_path / "data.csv", BASE)


def test_a_semicolon_file_with_labels_in_words(tmp_path: Path) -> None:
    data = write_csv(tmp_path, "t;c;a;f;cur\n2024-01-01;c;1.5;TRUE;eur\n2024-01-02;c;2;no;usd\n")
    frame = load_generic(
        data, {**BASE, "is_fraud": "f", "currency": "cur", "delimiter": ";"}, label_delay=timedelta(1)
    )
    assert frame["is_fraud"].tolist() == [True, False]
    assert frame["currency"].tolist() == ["EUR", "USD"]
    assert frame["label_time"].iloc[0] == ts("2024-01-02")
    assert frame["amount"].tolist() == [1.5, 2.0]


@pytest.mark.parametrize(
    ("column", "position", "name"),
    [
        ("amount (EUR)", 3, "extra.amount_EUR"),
        ("Unnamed: 0", 0, "extra.Unnamed_0"),
        ("_id", 1, "extra._id"),
        ("1st seen", 2, "extra._1st_seen"),
        ("", 4, "extra.column_4"),
        ("prénom", 5, "extra.pr_nom"),
        ("extra.x", 6, "extra.extra_x"),
    ],
)
def test_extra_column_names(column: str, position: int, name: str) -> None:
    assert extra_column_name(column, position) == name


def test_a_spreadsheets_file_reads_header_case_crlf_and_two_digit_years(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"When,CARD,Total\r\n4/18/15 2:47,c1,10.5\r\n4/19/15 13:05,c2,3\r\n")
    mapping = {"timestamp": "when", "customer_id": "card", "amount": "total"}
    with pytest.raises(BadRowError, match=r"line 2, key 'timestamp', column 'When': '4/18/15 2:47' is not an "
                       r"ISO 8601 time \(they read as '%m/%d/%y %H:%M': set timestamp_format"):  # fmt: skip
        load_generic(path, mapping)
    frame = load_generic(path, {**mapping, "timestamp_format": "%m/%d/%y %H:%M"})
    assert frame["timestamp"].tolist() == [ts("2015-04-18 02:47"), ts("2015-04-19 13:05")]
    assert frame["customer_id"].tolist() == ["c1", "c2"] and frame["amount"].tolist() == [10.5, 3.0]
    path.write_bytes(b"when,card,total\n4/5/15 2:47,c1,1\n")
    with pytest.raises(BadRowError, match=r"'%m/%d/%y %H:%M' or '%d/%m/%y %H:%M'"):  # ambiguous: says both
        load_generic(path, mapping)
