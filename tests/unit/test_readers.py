"""Files as people save them, through every reader: the time formats spreadsheets write, a header in
another case, CRLF line ends, a byte-order mark, blank lines; and a row that cannot be read, named by
its line in the file (the header is line 1), or skipped and counted with ``skip_bad_rows``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.datasets.fraud_ecom import load_fraud_ecom
from fraudstream.datasets.generic import load_generic
from fraudstream.datasets.handbook import load_handbook
from fraudstream.datasets.io import BadRowError, read_frame
from fraudstream.datasets.paysim import load_paysim
from fraudstream.datasets.sparkov import load_sparkov

ECOM = "user_id,signup_time,purchase_time,purchase_value,device_id,source,browser,sex,age,ip_address,class"
PAYSIM = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud"
)
SPARKOV = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,zip,lat,long,"
    "city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
runner = CliRunner()
MAPPING = {"timestamp": "when", "customer_id": "card", "amount": "total", "is_fraud": "fraud"}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(path: Path, lines: list[str], *, crlf: bool = False, bom: bool = False) -> Path:
    end = "\r\n" if crlf else "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (end.join(lines) + end).encode())
    return path


def ecom_rows(n: int, when: str = "4/18/2015 2:47") -> list[str]:
    return [f"{i},1/1/2015 0:00,{when},{10 + i},D{i},SEO,Chrome,M,30,{i}.5,{i % 2}" for i in range(n)]


def paysim_rows(n: int) -> list[str]:
    return [f"1,PAYMENT,{i + 1}.5,C{i},10,0,M{i},0,0,{i % 2}" for i in range(n)]


def sparkov_rows(n: int) -> list[str]:
    return [
        f"{i},01-01-2019 00:{i:02d},2.7E+15,m{i},grocery_pos,{i + 1}.25,Ann,Lee,F,1 Road,Town,NY,10001,"
        f"40.7,-74.0,8000,Clerk,09-03-1988,t{i},{1325376000 + 60 * i},40.8,-74.1,0"
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("written", "fmt", "expected"),
    [
        ("4/18/15 2:47", "%m/%d/%y %H:%M", "2015-04-18 02:47"),
        ("4/18/2015 2:47", "%m/%d/%Y %H:%M", "2015-04-18 02:47"),
        ("4/18/15 2:47:09", "%m/%d/%y %H:%M:%S", "2015-04-18 02:47:09"),
        ("4/18/2015 2:47:09", "%m/%d/%Y %H:%M:%S", "2015-04-18 02:47:09"),
    ],
)
def test_spreadsheet_times_with_a_bom_crlf_and_a_header_in_capitals(
    tmp_path: Path, written: str, fmt: str, expected: str
) -> None:
    data = write(
        tmp_path / "export.csv", ["WHEN,Card,TOTAL,Fraud", f"{written},c1,10.5,0"], crlf=True, bom=True
    )
    frame = load_generic(data, {**MAPPING, "timestamp_format": fmt})
    assert frame["timestamp"].tolist() == [ts(expected)]
    assert frame["customer_id"].tolist() == ["c1"] and frame["amount"].tolist() == [10.5]
    assert frame["is_fraud"].tolist() == [False]
    fraud = write(tmp_path / "Fraud_Data.csv", [ECOM.replace("user_id", "User_id"), *ecom_rows(1, written)],
                  crlf=True, bom=True)  # fmt: skip
    assert load_fraud_ecom(fraud)["timestamp"].tolist() == [ts(expected)]


def test_paysim_and_sparkov_read_crlf_and_a_bom(tmp_path: Path) -> None:
    paysim = load_paysim(write(tmp_path / "p.csv", [PAYSIM, *paysim_rows(3)], crlf=True, bom=True))
    assert paysim["amount"].tolist() == [1.5, 2.5, 3.5]
    assert paysim["is_fraud"].tolist() == [False, True, False]
    sparkov = load_sparkov(write(tmp_path / "s.csv", [SPARKOV, *sparkov_rows(2)], crlf=True, bom=True))
    assert sparkov["amount"].tolist() == [1.25, 2.25]
    assert sparkov["timestamp"].tolist() == [ts("2019-01-01 00:00"), ts("2019-01-01 00:01")]


def bad_middle_and_end(tmp_path: Path, reader: str) -> tuple[Path, str, str, int]:
    """A file of ``reader``'s kind of 8 rows with a bad one on line 4 and one on the last line (10,
    with a blank line 6 before it); the two reasons; the number of good rows."""
    if reader == "generic":
        rows = [f"2024-01-0{i + 1},c{i},{i + 1},0" for i in range(8)]
        rows[2], rows[7] = "2024-01-03,c2,lots,0", "2024-01-08,c7,1,maybe"
        lines = ["when,card,total,fraud", *rows[:4], "", *rows[4:]]
        return (write(tmp_path / "own.csv", lines), "key 'amount', column 'total': 'lots' is not a number",
                "key 'is_fraud', column 'fraud': 'maybe' is not a label", 6)  # fmt: skip
    if reader == "fraud_ecom":
        rows = ecom_rows(8)
        rows[2] = rows[2].replace("4/18/2015 2:47", "4/31/2015 2:47")
        rows[7] = rows[7].replace(",17,", ",seventeen,")
        lines = [ECOM, *rows[:4], "", *rows[4:]]
        return (write(tmp_path / "Fraud_Data.csv", lines),
                "field 'purchase_time': '4/31/2015 2:47' is not a time",
                "field 'purchase_value': 'seventeen' is not a number", 6)  # fmt: skip
    if reader == "paysim":
        rows = paysim_rows(8)
        rows[2] = rows[2].replace(",3.5,", ",3.5.5,")
        rows[7] = rows[7][:-1] + "2"
        lines = [PAYSIM, *rows[:4], "", *rows[4:]]
        return (write(tmp_path / "paysim.csv", lines), "field 'amount': '3.5.5' is not a number",
                "field 'isFraud': 2 is not 0 or 1", 6)  # fmt: skip
    if reader == "sparkov":
        rows = sparkov_rows(8)
        rows[2] = rows[2].replace("09-03-1988", "31-02-1988")
        rows[7] = rows[7].replace(",8.25,", ",-8.25,")
        lines = [SPARKOV, *rows[:4], "", *rows[4:]]
        return (write(tmp_path / "sparkov.csv", lines), "field 'dob': '31-02-1988' is not a time",
                "field 'amount': must be between 0 and", 6)  # fmt: skip
    rows = [f"t{i},2024-01-0{i + 1}T00:00:00Z,c{i},{i + 1}.0,False" for i in range(8)]
    rows[2] = rows[2].replace("2024-01-03T00:00:00Z", "yesterday")
    rows[7] = rows[7].replace("False", "perhaps")
    lines = ["transaction_id,timestamp,customer_id,amount,is_fraud", *rows[:4], "", *rows[4:]]
    return (write(tmp_path / "transactions.csv", lines),
            "field 'timestamp': 'yesterday' is not an ISO 8601 time",
            "field 'is_fraud': must be True or False, got 'perhaps'", 6)  # fmt: skip


def read(reader: str, path: Path, skip: bool = False) -> pd.DataFrame:
    if reader == "generic":
        return load_generic(path, MAPPING, skip_bad_rows=skip)
    if reader == "fraud_ecom":
        return load_fraud_ecom(path, skip_bad_rows=skip)
    if reader == "paysim":
        return load_paysim(path, skip_bad_rows=skip)
    if reader == "sparkov":
        return load_sparkov(path, skip_bad_rows=skip)
    return read_frame(path, skip_bad_rows=skip)


READERS = ("generic", "fraud_ecom", "paysim", "sparkov", "canonical")


@pytest.mark.parametrize("reader", READERS)
def test_a_bad_row_is_named_by_its_line_or_skipped_and_counted(
    tmp_path: Path, reader: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, middle, end, good = bad_middle_and_end(tmp_path, reader)
    with pytest.raises(BadRowError) as raised:
        read(reader, path)
    said = str(raised.value)
    assert said.startswith(f"{path.name} line 4, {middle}"), said
    assert "--skip-bad-rows" in said and raised.value.line == 4
    path.write_text("\n".join(line for i, line in enumerate(path.read_text().splitlines()) if i != 3) + "\n")
    with pytest.raises(BadRowError, match=rf"^{path.name} line 9, {end[:12]}"):  # the middle one gone
        read(reader, path)

    path, middle, end, good = bad_middle_and_end(tmp_path, reader)
    with caplog.at_level("WARNING", logger="fraudstream.datasets"):
        frame = read(reader, path, skip=True)
    assert len(frame) == good
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summary) == 1, caplog.text
    assert summary[0].startswith(f"{path.name}: skipped 2 bad rows of 8: line 4 ({middle}")
    assert f"line 10 ({end}" in summary[0]


def test_the_summary_names_the_first_three_and_says_there_are_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"2024-01-01,c{i},{'x' if i % 2 else i},0" for i in range(10)]
    path = write(tmp_path / "own.csv", ["when,card,total,fraud", *rows])
    with caplog.at_level("WARNING", logger="fraudstream.datasets"):
        frame = load_generic(path, MAPPING, skip_bad_rows=True)
    assert frame["amount"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert "skipped 5 bad rows of 10: line 3 (key 'amount'" in caplog.text
    assert "line 5 (" in caplog.text and "line 7 (" in caplog.text and "line 9 (" not in caplog.text
    assert caplog.text.rstrip().endswith(", ...")


def test_every_row_of_a_column_bad_but_the_first_value(tmp_path: Path) -> None:
    """The time format is chosen past a bad first value, so one bad row does not spoil a column."""
    rows = ["yesterday,c0,1,0", "1/2/2015 3:04,c1,2,1", "12/31/2015 23:59,c2,3,0"]
    path = write(tmp_path / "Fraud_Data.csv", [ECOM])
    path.write_text(ECOM + "\n" + "\n".join(
        f"{i},1/1/2015 0:00,{r.split(',')[0]},10,D,SEO,Chrome,M,30,1.5,{r[-1]}" for i, r in enumerate(rows)
    ) + "\n")  # fmt: skip
    with pytest.raises(BadRowError, match=r"line 2, field 'purchase_time': 'yesterday'"):
        load_fraud_ecom(path)
    frame = load_fraud_ecom(path, skip_bad_rows=True)
    assert frame["timestamp"].tolist() == [ts("2015-01-02 03:04"), ts("2015-12-31 23:59")]


def test_a_label_time_without_a_label_and_a_parquet_row(tmp_path: Path) -> None:
    csv = write(tmp_path / "own.csv", ["when,card,total,fraud,known", "2024-01-01,c1,1,1,2024-01-05",
                                       "2024-01-02,c2,1,,2024-01-06"])  # fmt: skip
    mapping = {**MAPPING, "label_time": "known"}
    with pytest.raises(
        BadRowError, match=r"own\.csv line 3, key 'is_fraud', column 'fraud': label_time is set"
    ):
        load_generic(csv, mapping)
    assert load_generic(csv, mapping, skip_bad_rows=True)["customer_id"].tolist() == ["c1"]
    parquet = tmp_path / "own.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    with pytest.raises(BadRowError, match=r"own\.parquet row 1, key 'is_fraud'"):  # rows from 0
        load_generic(parquet, mapping)


def test_handbook_rows_out_of_bounds(tmp_path: Path) -> None:
    path = tmp_path / "handbook.parquet"
    pd.DataFrame(
        {
            "TRANSACTION_ID": [0, 1, 2],
            "TX_DATETIME": pd.to_datetime(["2018-04-01 00:00", "2018-04-01 00:01", "2018-04-01 00:02"]),
            "CUSTOMER_ID": [1, 2, 3],
            "TERMINAL_ID": [1, 2, 3],
            "TX_AMOUNT": [10.0, -1.0, 12.0],
            "TX_FRAUD": [0, 0, 1],
            "TX_FRAUD_SCENARIO": [0, 0, 1],
        }
    ).to_parquet(path)
    with pytest.raises(BadRowError, match=r"handbook\.parquet row 1, field 'amount': must be between 0"):
        load_handbook(path)
    frame = load_handbook(path, skip_bad_rows=True, label_delay=timedelta(days=1))
    assert frame["transaction_id"].tolist() == ["0", "2"]


def own_file(workdir: Path, n: int = 400) -> list[str]:
    """A shop's export with a bad amount on line 51 and a bad label on the last line; its mapping."""
    rows = [
        f"{1 + i // 24}/03/2025 {i % 24}:{i % 60:02d},c{i % 20},{i % 90 + 1}.5,{int(i % 37 == 0)}"
        for i in range(n)
    ]
    rows[49] = rows[49].rsplit(",", 2)[0] + ",lots,0"
    rows[-1] = rows[-1][:-1] + "maybe"
    write(workdir / "own.csv", ["When,Card,Total,Fraud", *rows], crlf=True, bom=True)
    mapping = {**MAPPING, "timestamp_format": "%d/%m/%Y %H:%M"}
    (workdir / "m.yaml").write_text("".join(f"{key}: '{value}'\n" for key, value in mapping.items()))
    return ["--data", "own.csv", "--mapping", "m.yaml"]


def test_skip_bad_rows_through_the_cli(workdir: Path) -> None:
    args = [*own_file(workdir), "--features", "handbook", "--out", "f.parquet"]
    refused = runner.invoke(app, ["features", *args])
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2, refused.stderr
    assert "own.csv line 51, key 'amount', column 'Total': 'lots' is not a number" in said
    assert "--skip-bad-rows" in said and not (workdir / "f.parquet").exists()

    done = runner.invoke(app, ["features", *args, "--skip-bad-rows", "--json"])
    said = " ".join(done.stderr.split())
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 398
    assert (
        "own.csv: skipped 2 bad rows of 400: line 51 (key 'amount', column 'Total': 'lots' is not a number), "
        "line 401 (key 'is_fraud', column 'Fraud': 'maybe' is not a label"
    ) in said


@pytest.mark.parametrize("command", ["train", "evaluate", "backtest", "features", "replay"])
def test_every_command_that_reads_a_file_takes_skip_bad_rows(command: str) -> None:
    assert "--skip-bad-rows" in runner.invoke(app, [command, "--help"], terminal_width=100).stdout


def test_train_hands_skip_bad_rows_to_the_reader(workdir: Path) -> None:
    args = ["train", *own_file(workdir, n=60), "--out", "b.fsb"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "line 51, key 'amount'" in " ".join(refused.stderr.split())
    skipped = runner.invoke(app, [*args, "--skip-bad-rows"])  # then too short a history to train on
    assert "own.csv: skipped 2 bad rows of 60: line 51" in " ".join(skipped.stderr.split()), skipped.stderr


def test_rows_with_too_few_fields_do_not_shift_the_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"2024-01-0{i + 1},c{i},{i + 1},0" for i in range(6)]
    rows[4] = "2024-01-05,c4,lots,0"
    lines = ["when,card,total,fraud", rows[0], "2024-01-09,c9", *rows[1:3], "", rows[3], "cut", *rows[4:]]
    path = write(tmp_path / "own.csv", lines, crlf=True)
    logged = caplog.at_level("WARNING", logger="fraudstream.datasets")
    with logged, pytest.raises(BadRowError, match=r"own\.csv line 9, key 'amount', column 'total': 'lots'"):
        load_generic(path, MAPPING)
    assert "skipped 2 rows with too few fields (the first on line 3: '2024-01-09,c9')" in caplog.text
    path = write(tmp_path / "own.csv", [lines[0], *rows[:5], "2024-01-06,c5"])  # cut short at the end
    with pytest.raises(BadRowError, match=r"own\.csv line 6, key 'amount'"):
        load_generic(path, MAPPING)
    assert "skipped 1 row with too few fields (the first on line 7: '2024-01-06,c5')" in caplog.text


def test_fraud_data_a_class_that_does_not_read_is_a_bad_row_not_an_unknown_label(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = ecom_rows(5, "4/18/15 2:47")
    rows[1] = rows[1][:-1] + "yes"
    rows[4] = rows[4][:-1]  # the last row without its class, as a file re-saved and cut
    path = write(
        tmp_path / "Fraud_Data.csv", [ECOM.replace("user_id", "User_id"), *rows], crlf=True, bom=True
    )
    with caplog.at_level("WARNING", logger="fraudstream.datasets"):
        frame = load_fraud_ecom(path, skip_bad_rows=True)
    assert frame["transaction_id"].tolist() == ["ecom-0", "ecom-2", "ecom-3", "ecom-4"]
    assert frame["is_fraud"].isna().tolist() == [False, False, False, True]
    assert "1 purchase without a class (the first on line 6): kept, unlabelled" in caplog.text
    assert "skipped 1 bad row of 5: line 3 (field 'class': 'yes' is not a number)" in caplog.text
