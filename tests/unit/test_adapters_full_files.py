"""The adapters on small synthetic files in the full public files' formats, and naming those files.

The shared folder holds samples re-saved by a spreadsheet program; the public files differ (ISO times,
whole card numbers, float balances, two Sparkov files). Each test writes a few rows in the public
file's exact header and value style.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudstream.config import Settings
from fraudstream.datasets.fraud_ecom import IP_COUNTRY_FILE, OPTIONAL, load_fraud_ecom
from fraudstream.datasets.paysim import load_paysim
from fraudstream.datasets.registry import DatasetNotFoundError, load_dataset
from fraudstream.datasets.source import load_source
from fraudstream.datasets.sparkov import load_sparkov
from fraudstream.events.frame import COLUMNS, extra_columns, iter_records, normalize_frame

PAYSIM_HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,"
    "isFraud,isFlaggedFraud"
)
ECOM_HEADER = (
    "user_id,signup_time,purchase_time,purchase_value,device_id,source,browser,sex,age,ip_address,class"
)
IP_HEADER = "lower_bound_ip_address,upper_bound_ip_address,country"
SPARKOV_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,zip,lat,long,"
    "city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
SPARKOV_TRAIN = [
    '0,2019-01-01 00:00:18,2703186189652095,"fraud_Rippin, Kub and Mann",misc_net,4.97,Jennifer,Banks,F,'
    '561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,"Psychologist, counselling",1988-03-09,'
    "0b242abb623afc578575680df30655b9,1325376018,36.011293,-82.048315,0",
    '1,2019-01-01 00:00:44,630423337322,"fraud_Heller, Gutmann and Zieme",grocery_pos,107.23,Stephanie,'
    "Gill,F,43039 Riley Greens Suite 393,Orient,WA,99160,48.8878,-118.2105,149,Special educational needs "
    "teacher,1978-06-21,1f76529f8574734946361c461b024d99,1325376044,49.159047,-118.186462,0",
    "2,2020-06-21 12:13:37,38859492057661,fraud_Lind-Buckridge,entertainment,220.11,Edward,Sanchez,M,"
    "594 White Dale Suite 530,Malad City,ID,83252,42.1808,-112.262,4154,Nature conservation officer,"
    "1962-01-19,a1a22d70485983eac12b5b88dad1cf95,1371816817,43.150704,-112.154481,1",
]
SPARKOV_TEST = [
    "0,2020-06-21 12:14:25,2291163933867244,fraud_Kirlin and Sons,personal_care,2.86,Jeff,Elliott,M,"
    "351 Darlene Green,Columbia,SC,29209,33.9659,-80.9355,333497,Mechanical engineer,1968-03-19,"
    "2da90c7d74bd46a0caf3777415b3ebd3,1371816865,33.986391,-81.200714,0",
    "1,2020-06-21 12:12:08,3573030041201292,fraud_Sporer-Keebler,personal_care,29.84,Joanne,Williams,F,"
    "3638 Marsh Union,Altonah,UT,84002,40.3207,-110.436,302,Sales professional,1990-01-17,"
    "324cc204407e99f51b0d6ca0055005e7,1371816728,39.450498,-109.960431,0",
]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(path: Path, header: str, rows: list[str], newline: str = "\n") -> Path:
    path.write_text(newline.join([header, *rows]) + newline, encoding="utf-8")
    return path


def test_paysim_full_format(tmp_path: Path) -> None:
    rows = [
        "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0",
        "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0",
        "1,CASH_OUT,181.0,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,0",
        "3,DEBIT,5337.77,C712410124,41720.0,36382.23,C195600860,41898.0,40348.79,0,0",
        "743,CASH_OUT,850002.52,C1280323807,850002.52,0.0,C873221189,6510099.11,7360101.63,1,0",
    ]
    frame = load_paysim(write(tmp_path / "PS_20174392719_1491204439457_log.csv", PAYSIM_HEADER, rows))
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert frame["transaction_id"].tolist() == [f"paysim-{i}" for i in range(5)]
    assert frame["timestamp"].tolist() == [
        ts("2025-01-01 00:00"),
        ts("2025-01-01 00:20"),
        ts("2025-01-01 00:40"),
        ts("2025-01-01 02:00"),
        ts("2025-01-31 22:00"),
    ]
    assert frame["payment_type"].tolist() == ["PAYMENT", "TRANSFER", "CASH_OUT", "DEBIT", "CASH_OUT"]
    assert frame["channel"].tolist() == ["mobile", "transfer", "mobile", "mobile", "mobile"]
    assert frame["merchant_id"].iloc[0] == "M1979787155"
    assert frame["extra.step"].tolist() == [1.0, 1.0, 1.0, 3.0, 743.0]
    last = frame.iloc[-1]
    assert [last[f"extra.{side}_balance_{who}"] for who in ("orig", "dest") for side in ("old", "new")] == [
        850002.52,
        0.0,
        6510099.11,
        7360101.63,
    ]
    assert frame["is_fraud"].tolist() == [False, True, True, False, True]
    assert all(str(frame[c].dtype) == "float64" for c in extra_columns(frame))
    assert load_paysim(tmp_path / "PS_20174392719_1491204439457_log.csv", limit=2)[
        "transaction_id"
    ].tolist() == [
        "paysim-0",
        "paysim-1",
    ]


def test_paysim_extras_travel_in_records(tmp_path: Path) -> None:
    path = write(tmp_path / "paysim.csv", PAYSIM_HEADER, ["2,PAYMENT,1.5,C1,10.0,8.5,M2,0.0,0.0,0,0"])
    (record,) = iter_records(load_paysim(path))
    assert record["extra"] == {
        "old_balance_orig": 10.0,
        "new_balance_orig": 8.5,
        "old_balance_dest": 0.0,
        "new_balance_dest": 0.0,
        "step": 2.0,
    }


def test_fraud_ecom_full_format(tmp_path: Path) -> None:
    data = write(
        tmp_path / "Fraud_Data.csv",
        ECOM_HEADER,
        [
            "22058,2015-02-24 22:55:49,2015-04-18 02:47:11,34,QVPSPJUOCKZAR,SEO,Chrome,M,39,"
            "732758368.79972,0",
            "333320,2015-06-07 20:39:50,2015-06-08 01:38:54,16,EOGFQPIZPYXFZ,Ads,Chrome,F,53,"
            "350311387.865908,0",
            "1359,2015-01-01 18:52:44,2015-01-01 18:52:45,15,YSSKYOSJHPPLJ,SEO,Opera,M,53,2621473820.11095,1",
        ],
    )
    ips = write(
        tmp_path / "IpAddress_to_Country.csv",
        IP_HEADER,
        [
            "16777216.0,16777471,Australia",
            "350224384.0,352321535,United States",
            "721420288.0,738197503,Japan",
        ],
    )
    frame = load_fraud_ecom(data, ips, label_delay=timedelta(days=1))
    assert frame["transaction_id"].tolist() == ["ecom-1359", "ecom-22058", "ecom-333320"]
    first = frame.iloc[0]
    assert (first["timestamp"], first["account_created_at"]) == (
        ts("2015-01-01 18:52:45"),
        ts("2015-01-01 18:52:44"),
    )
    assert first["label_time"] == ts("2015-01-02 18:52:45")
    assert bool(first["is_fraud"]) and pd.isna(first["country"])
    assert frame["country"].tolist()[1:] == ["Japan", "United States"]
    assert frame["ip_address"].iloc[1] == "43.173.1.96"
    assert frame["browser"].tolist() == ["Opera", "Chrome", "Chrome"]
    assert frame[["extra.source", "extra.sex", "extra.age"]].iloc[1].tolist() == ["SEO", "M", 39.0]
    assert frame.attrs["missing_columns"] == []


def test_fraud_ecom_optional_columns_may_be_absent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = write(
        tmp_path / "thin.csv",
        "user_id,signup_time,purchase_time,purchase_value,class",
        ["7,2015-01-02 03:04:05,2015-01-03 04:05:06,10,1", "8,2015-01-02 03:04:05,2015-01-02 04:05:06,12,0"],
    )
    ips = write(tmp_path / "ips.csv", IP_HEADER, ["16777216.0,16777471,Australia"])
    with caplog.at_level(logging.WARNING, logger="fraudstream.datasets.fraud_ecom"):
        frame = load_fraud_ecom(data, ips)
    assert frame.attrs["missing_columns"] == list(OPTIONAL)
    assert all(name in caplog.text for name in OPTIONAL) and "thin.csv" in caplog.text
    assert frame["transaction_id"].tolist() == ["ecom-8", "ecom-7"]
    assert frame[["device_id", "ip_address", "browser", "country"]].isna().all().all()
    assert extra_columns(frame) == []
    assert normalize_frame(frame).dtypes.equals(frame.dtypes)

    data = write(
        tmp_path / "no_ip.csv",
        "user_id,signup_time,purchase_time,purchase_value,device_id,browser,age,class",
        ["7,2015-01-02 03:04:05,2015-01-03 04:05:06,10,D1,Safari,33,0"],
    )
    frame = load_fraud_ecom(data)
    assert frame.attrs["missing_columns"] == ["source", "sex", "ip_address"]
    assert (frame["device_id"].iloc[0], frame["extra.age"].iloc[0]) == ("D1", 33.0)
    assert extra_columns(frame) == ["extra.age"]


def test_sparkov_full_format_two_files_merge_in_time_order(tmp_path: Path) -> None:
    train = write(tmp_path / "fraudTrain.csv", SPARKOV_HEADER, SPARKOV_TRAIN)
    test = write(tmp_path / "fraudTest.csv", SPARKOV_HEADER, SPARKOV_TEST)
    frame = load_sparkov(train, test)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert frame["transaction_id"].str[:4].tolist() == ["0b24", "1f76", "324c", "a1a2", "2da9"]
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["timestamp"].iloc[0] == ts("2019-01-01 00:00:18")
    first = frame.iloc[0]
    assert first["customer_id"].startswith("cc-2703186189652095-")
    assert (first["latitude"], first["longitude"]) == (36.0788, -81.1781)
    assert (first["extra.merch_lat"], first["extra.merch_long"]) == (36.011293, -82.048315)
    assert first["extra.dob"] == ts("1988-03-09")
    assert [first["extra.gender"], first["extra.state"], first["extra.job"], first["extra.city_pop"]] == [
        "F",
        "NC",
        "Psychologist, counselling",
        3495.0,
    ]
    assert first["merchant_id"] == "fraud_Rippin, Kub and Mann"
    assert frame["is_fraud"].sum() == 1
    limited = load_sparkov(train, test, limit=4)
    assert limited["transaction_id"].str[:4].tolist() == ["0b24", "1f76", "a1a2", "2da9"]
    assert load_sparkov(train, test, limit=2)["transaction_id"].str[:4].tolist() == ["0b24", "1f76"]


def test_sparkov_holder_digest_does_not_depend_on_the_date_format(tmp_path: Path) -> None:
    full = load_sparkov(write(tmp_path / "full.csv", SPARKOV_HEADER, SPARKOV_TRAIN[:1]))
    sample_row = (
        SPARKOV_TRAIN[0]
        .replace("2019-01-01 00:00:18", "01-01-2019 00:00")
        .replace("1988-03-09", "09-03-1988")
    )
    sample = load_sparkov(write(tmp_path / "sample.csv", SPARKOV_HEADER, [sample_row]))
    assert full["customer_id"].iloc[0].rsplit("-", 1)[1] == sample["customer_id"].iloc[0].rsplit("-", 1)[1]
    assert sample["timestamp"].iloc[0] == full["timestamp"].iloc[0]
    assert sample["extra.dob"].iloc[0] == full["extra.dob"].iloc[0]


def test_load_dataset_reads_the_files_given(tmp_path: Path) -> None:
    train = write(tmp_path / "fraudTrain.csv", SPARKOV_HEADER, SPARKOV_TRAIN)
    test = write(tmp_path / "fraudTest.csv", SPARKOV_HEADER, SPARKOV_TEST)
    frame = load_dataset("sparkov", tmp_path / "no-datasets-here", paths=[train, test])
    assert len(frame) == 5
    paysim = write(tmp_path / "paysim.csv", PAYSIM_HEADER, ["1,PAYMENT,1.0,C1,1.0,0.0,M1,0.0,0.0,0,0"])
    assert load_dataset("paysim", None, paths=[paysim])["customer_id"].tolist() == ["C1"]
    with pytest.raises(
        ValueError, match=r"'paysim' takes PS_20174392719_1491204439457_log\.csv; got 2 files"
    ):
        load_dataset("paysim", None, paths=[paysim, paysim])
    with pytest.raises(ValueError, match=r"'fraud_ecom' takes Fraud_Data\.csv, then optionally"):
        load_dataset("fraud_ecom", None, paths=[])
    with pytest.raises(DatasetNotFoundError, match=r"'sparkov': no such file .*missing\.csv"):
        load_dataset("sparkov", None, paths=[train, tmp_path / "missing.csv"])


def test_load_source_passes_paths_and_checks_the_options(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"datasets_dir": tmp_path / "nowhere"})
    paysim = write(tmp_path / "paysim.csv", PAYSIM_HEADER, ["1,PAYMENT,1.0,C1,1.0,0.0,M1,0.0,0.0,1,0"])
    frame = load_source(settings, dataset="paysim", label_delay_days=2, paths=[paysim])
    assert frame["label_time"].iloc[0] - frame["timestamp"].iloc[0] == timedelta(days=2)
    with pytest.raises(ValueError, match=r"--path .* add --dataset NAME"):
        load_source(settings, paths=[paysim])
    with pytest.raises(ValueError, match=r"--mapping .* --data FILE"):
        load_source(settings, dataset="paysim", mapping=tmp_path / "m.yaml")
    with pytest.raises(ValueError, match="either --data or --dataset"):
        load_source(settings, data=paysim, dataset="paysim")
    with pytest.raises(ValueError, match=r"is a folder with no archive in it .* a transactions file"):
        load_source(settings, data=tmp_path)


@pytest.mark.datasets
def test_fraud_ecom_sample_through_paths(datasets_dir: Path) -> None:
    data = datasets_dir / "fraud_ecom" / "Fraud_Data_first30k.csv"
    without_ips = load_dataset("fraud_ecom", None, paths=[data], limit=100)
    with_ips = load_dataset("fraud_ecom", None, paths=[data, datasets_dir / IP_COUNTRY_FILE], limit=100)
    assert without_ips["country"].isna().all() and with_ips["country"].notna().any()
