"""Dataset adapters: the real samples in the shared folder, and synthetic files for the edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.datasets.fraud_ecom import (
    FRAUD_DATA_FILE,
    IP_COUNTRY_FILE,
    ip_to_dotted,
    load_fraud_ecom,
    load_ip_ranges,
    lookup_country,
)
from fraudstream.datasets.handbook import HANDBOOK_FILE, load_handbook
from fraudstream.datasets.paysim import PAYSIM_FILE, load_paysim
from fraudstream.datasets.registry import (
    DATASETS,
    DatasetNotFoundError,
    UnknownDatasetError,
    load_dataset,
)
from fraudstream.datasets.sparkov import SPARKOV_FILE, load_sparkov
from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import COLUMNS, extra_columns, normalize_frame

ECOM_HEADER = (
    "user_id,signup_time,purchase_time,purchase_value,device_id,source,browser,sex,age,ip_address,class"
)
PAYSIM_EXTRAS = (
    "extra.old_balance_orig",
    "extra.new_balance_orig",
    "extra.old_balance_dest",
    "extra.new_balance_dest",
    "extra.step",
)
SPARKOV_EXTRAS = (
    "extra.merch_lat",
    "extra.merch_long",
    "extra.city_pop",
    "extra.dob",
    "extra.gender",
    "extra.state",
    "extra.job",
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def assert_canonical(frame: pd.DataFrame, extras: tuple[str, ...] = ()) -> None:
    assert tuple(frame.columns) == (*COLUMNS, *extras)
    assert frame["extra"].isna().all()  # flat extra.<name> columns only
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["transaction_id"].is_unique
    assert normalize_frame(frame).dtypes.equals(frame.dtypes)


@pytest.fixture(scope="module")
def handbook(datasets_dir: Path) -> pd.DataFrame:
    return load_handbook(datasets_dir / HANDBOOK_FILE)


@pytest.fixture(scope="module")
def ecom(datasets_dir: Path) -> pd.DataFrame:
    return load_fraud_ecom(datasets_dir / FRAUD_DATA_FILE, datasets_dir / IP_COUNTRY_FILE)


@pytest.fixture(scope="module")
def paysim(datasets_dir: Path) -> pd.DataFrame:
    return load_paysim(datasets_dir / PAYSIM_FILE)


@pytest.fixture(scope="module")
def sparkov(datasets_dir: Path) -> pd.DataFrame:
    return load_sparkov(datasets_dir / SPARKOV_FILE)


@pytest.mark.datasets
def test_handbook_full_sample(handbook: pd.DataFrame) -> None:
    assert len(handbook) == 872_795
    assert handbook["is_fraud"].mean() == pytest.approx(0.0078, abs=0.0005)
    assert_canonical(handbook)
    assert extra_columns(handbook) == []
    assert handbook["timestamp"].iloc[0] >= ts("2018-04-01")
    assert handbook["timestamp"].iloc[-1] < ts("2018-07-01")
    assert (handbook["label_time"] - handbook["timestamp"] == timedelta(days=7)).all()
    assert handbook["customer_id"].str.fullmatch(r"C\d+").all()
    assert handbook["merchant_id"].str.fullmatch(r"T\d+").all()
    assert handbook["channel"].unique().tolist() == ["pos"]
    fraud = handbook["is_fraud"].to_numpy(dtype=bool)
    assert handbook.loc[~fraud, "fraud_scenario"].isna().all()
    scenarios = handbook.loc[fraud, "fraud_scenario"].value_counts().to_dict()
    assert scenarios == {"compromised_terminal": 4161, "compromised_customer": 2195, "amount_over_220": 489}
    assert (handbook.loc[handbook["fraud_scenario"] == "amount_over_220", "amount"] > 220).all()


@pytest.mark.datasets
def test_handbook_limit_and_label_delay(datasets_dir: Path) -> None:
    frame = load_handbook(datasets_dir / HANDBOOK_FILE, limit=1000, label_delay=timedelta(days=2))
    assert len(frame) == 1000
    assert frame["transaction_id"].iloc[0] == "0"
    assert frame["timestamp"].iloc[0] == ts("2018-04-01 00:00:31")
    assert (frame["label_time"] - frame["timestamp"] == timedelta(days=2)).all()


@pytest.mark.datasets
def test_fraud_ecom_sample(ecom: pd.DataFrame) -> None:
    assert len(ecom) == 30_190 - 1
    assert "ecom-393385" not in set(ecom["transaction_id"])
    assert ecom["is_fraud"].mean() == pytest.approx(0.095, abs=0.001)
    assert_canonical(ecom, ("extra.source", "extra.sex", "extra.age"))
    assert ecom.attrs["missing_columns"] == []
    assert ecom["timestamp"].iloc[0] >= ts("2015-01-01")
    assert ecom["timestamp"].iloc[-1] < ts("2016-01-01")
    assert (ecom["account_created_at"] <= ecom["timestamp"]).all()
    assert ecom["channel"].unique().tolist() == ["online"]
    assert ecom["ip_address"].str.fullmatch(r"\d{1,3}(\.\d{1,3}){3}").all()
    row = ecom.set_index("transaction_id").loc["ecom-22058"]
    assert row["customer_id"] == "U22058"
    assert row["timestamp"] == ts("2015-04-18 02:47")
    assert row["account_created_at"] == ts("2015-02-24 22:55")
    assert row["amount"] == 34.0
    assert row["ip_address"] == "43.173.1.96"
    assert (row["device_id"], row["browser"]) == ("QVPSPJUOCKZAR", "Chrome")
    assert (row["extra.source"], row["extra.sex"], row["extra.age"]) == ("SEO", "M", 39.0)
    assert not row["is_fraud"]


@pytest.mark.datasets
def test_fraud_ecom_countries_by_hand(ecom: pd.DataFrame) -> None:
    country = ecom.set_index("transaction_id")["country"]
    assert country["ecom-22058"] == "Japan"
    assert country["ecom-333320"] == "United States"
    assert country["ecom-1359"] == "United States"
    assert pd.isna(country["ecom-150084"])
    assert country.notna().mean() == pytest.approx(0.755, abs=0.01)


@pytest.mark.datasets
def test_ip_ranges_sample_repairs(datasets_dir: Path) -> None:
    ranges = load_ip_ranges(datasets_dir / IP_COUNTRY_FILE)
    assert len(ranges) == 103_895 - 1
    assert ranges.iloc[-1].tolist() == [3_349_554_688, 3_349_554_943, "Canada"]
    assert "Can" not in set(ranges["country"])
    lowers, uppers = ranges["lower"].to_numpy(), ranges["upper"].to_numpy()
    assert (lowers[1:] > uppers[:-1]).all()
    assert ranges.set_index("lower").loc[1_024_000_000, "country"] == "Philippines"
    assert lookup_country(np.array([1_023_999_999, 1_024_000_000]), ranges).tolist() == [
        "Singapore",
        "Philippines",
    ]


@pytest.mark.datasets
def test_paysim_sample(paysim: pd.DataFrame) -> None:
    assert len(paysim) == 19_999
    assert paysim["is_fraud"].mean() == pytest.approx(0.0041, abs=0.0002)
    assert_canonical(paysim, PAYSIM_EXTRAS)
    assert paysim["timestamp"].is_unique
    assert paysim["timestamp"].iloc[0] == ts("2025-01-01")
    assert paysim["timestamp"].iloc[-1] < ts("2025-01-01 08:00")
    assert paysim["transaction_id"].tolist()[:3] == ["paysim-0", "paysim-1", "paysim-2"]
    steps = paysim["extra.step"]
    hours = (paysim["timestamp"] - ts("2025-01-01")) // pd.Timedelta(hours=1) + 1
    assert (steps == hours).all()
    transfers = paysim["payment_type"] == "TRANSFER"
    assert (paysim.loc[transfers, "channel"] == "transfer").all()
    assert (paysim.loc[~transfers, "channel"] == "mobile").all()
    first = paysim.iloc[0]
    assert (first["customer_id"], first["merchant_id"], first["amount"]) == (
        "C1231006815",
        "M1979787155",
        9839.64,
    )
    assert first["payment_type"] == "PAYMENT"
    balances = [first[c] for c in PAYSIM_EXTRAS[:4]]
    assert balances == [170136.0, 160296.36, 0.0, 0.0]


@pytest.mark.datasets
def test_paysim_start_and_limit(datasets_dir: Path) -> None:
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    frame = load_paysim(datasets_dir / PAYSIM_FILE, start=start, limit=100)
    assert len(frame) == 100
    assert frame["timestamp"].iloc[0] == pd.Timestamp(start)
    assert frame["timestamp"].iloc[-1] < pd.Timestamp(start) + timedelta(hours=1)


@pytest.mark.datasets
def test_sparkov_sample(sparkov: pd.DataFrame) -> None:
    assert len(sparkov) == 6_025
    assert sparkov["is_fraud"].mean() == pytest.approx(0.0041, abs=0.0002)
    assert_canonical(sparkov, SPARKOV_EXTRAS)
    assert sparkov["timestamp"].iloc[0] == ts("2019-01-01 00:00:18")
    assert sparkov["timestamp"].iloc[-1] == ts("2019-01-04 21:16:58")
    first = sparkov.iloc[0]
    assert first["transaction_id"] == "0b242abb623afc578575680df30655b9"
    assert first["customer_id"].startswith("cc-2.70319E+15-")
    assert (first["merchant_id"], first["merchant_category"], first["channel"]) == (
        "fraud_Rippin, Kub and Mann",
        "misc_net",
        "online",
    )
    assert (first["latitude"], first["longitude"]) == (36.0788, -81.1781)
    assert [first[c] for c in SPARKOV_EXTRAS] == [
        36.011293,
        -82.048315,
        3495.0,
        ts("1988-03-09"),
        "F",
        "NC",
        "Psychologist, counselling",
    ]
    assert sparkov["customer_id"].nunique() == 888
    assert sparkov["customer_id"].str.extract(r"^(cc-[^-]+)-")[0].nunique() == 870
    online = sparkov["merchant_category"].str.endswith("_net")
    assert (sparkov["channel"] == online.map({True: "online", False: "pos"})).all()


@pytest.mark.datasets
def test_registry_loads_by_name(datasets_dir: Path) -> None:
    assert set(DATASETS) == {"handbook", "fraud_ecom", "paysim", "sparkov"}
    for name in DATASETS:
        frame = load_dataset(name, datasets_dir, limit=50)
        assert len(frame) == 50
        assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError, match="handbook, fraud_ecom, paysim, sparkov"):
        load_dataset("kaggle", tmp_path)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("paysim", tmp_path / "nowhere")
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    assert str(tmp_path / "nowhere" / PAYSIM_FILE) in message
    assert "--datasets-dir" in message
    assert "FRAUD_DATASETS_DIR" in message


def write_ecom(tmp_path: Path, rows: list[str], ranges: list[str]) -> tuple[Path, Path]:
    data, ips = tmp_path / "data.csv", tmp_path / "ips.csv"
    data.write_text("\n".join([ECOM_HEADER, *rows]) + "\n", encoding="utf-8-sig")
    lines = ["lower_bound_ip_address,upper_bound_ip_address,country", *ranges]
    ips.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    return data, ips


def test_ip_binary_search_edges(tmp_path: Path) -> None:
    ips = [99, 100, 150.7, 199.9, 200, 299, 300, 400, 401, 599, 600, 10**10]
    rows = [f"{i},1/2/2015 3:04,12/31/2015 23:59,10,DEV,SEO,Chrome,M,30,{ip},0" for i, ip in enumerate(ips)]
    data, ip_file = write_ecom(
        tmp_path, rows, ["100,199,A", "300,399,B", "400,400,C", "500,599,Canada", "600,700,Ca"]
    )
    frame = load_fraud_ecom(data, ip_file).set_index("transaction_id")
    found = frame["country"].reindex([f"ecom-{i}" for i in range(len(ips))]).fillna("-").tolist()
    assert found == ["-", "A", "A", "A", "-", "-", "B", "C", "-", "Canada", "-", "-"]
    assert frame.loc["ecom-2", "ip_address"] == "0.0.0.150"
    assert frame["ip_address"].isna()["ecom-11"]
    assert frame.loc["ecom-0", "timestamp"] == ts("2015-12-31 23:59")
    assert frame.loc["ecom-0", "account_created_at"] == ts("2015-01-02 03:04")


def test_ip_ranges_repairs_and_truncation(tmp_path: Path) -> None:
    _, ip_file = write_ecom(
        tmp_path,
        [],
        ["1000,1023999999,X", "1.02E+09,1024032767,Y", "1.1E+09,1100000010,Z", "1100000011,1100000020,Y"],
    )
    ranges = load_ip_ranges(ip_file)
    assert ranges["lower"].tolist() == [1000, 1_024_000_000, 1_100_000_011]
    assert ranges["country"].tolist() == ["X", "Y", "Y"]
    _, ip_file = write_ecom(tmp_path, [], ["1,5,Chad", "6,9,China", "10,12,Ch"])
    assert load_ip_ranges(ip_file)["country"].tolist() == ["Chad", "China"]
    _, ip_file = write_ecom(tmp_path, [], ["1,5,China", "6,9,Chad", "10,12,", "13,"])
    assert load_ip_ranges(ip_file)["country"].tolist() == ["China", "Chad"]
    empty = load_ip_ranges(write_ecom(tmp_path, [], [])[1])
    assert lookup_country(np.array([1.0, np.nan]), empty).isna().all()


def test_ip_to_dotted() -> None:
    dotted = ip_to_dotted(np.array([0, 16_777_216, 2**32 - 1, 2**32, -1, np.nan]))
    assert dotted.tolist()[:3] == ["0.0.0.0", "1.0.0.0", "255.255.255.255"]
    assert dotted.isna().tolist()[3:] == [True, True, True]


def test_fraud_ecom_drops_cut_row_and_works_without_ips(tmp_path: Path) -> None:
    rows = ["7,1/2/2015 3:04,1/3/2015 4:05,10,DEV,SEO,Chrome,M,30,16777216,1", "8,1/2/2015 3:04,,,,,,,,,"]
    data, _ = write_ecom(tmp_path, rows, [])
    frame = load_fraud_ecom(data, label_delay=timedelta(hours=1))
    assert frame["transaction_id"].tolist() == ["ecom-7"]
    assert frame["country"].isna().all()
    assert frame["label_time"].iloc[0] == ts("2015-01-03 05:05")
    assert bool(frame["is_fraud"].iloc[0])


def test_missing_columns_name_file_and_column(tmp_path: Path) -> None:
    data, ips = write_ecom(tmp_path, [], [])
    data.write_text(ECOM_HEADER.replace(",class", "") + "\n", encoding="utf-8-sig")
    with pytest.raises(SchemaError, match=r"'class'.*data\.csv"):
        load_fraud_ecom(data, ips)
    ips.write_text("lower_bound_ip_address,country\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"'upper_bound_ip_address'.*ips\.csv"):
        load_ip_ranges(ips)
    paysim = tmp_path / "paysim.csv"
    paysim.write_text("step,type,amount,nameOrig,nameDest\n1,PAYMENT,1.0,C1,M1\n")
    with pytest.raises(SchemaError, match=r"'isFraud'.*paysim\.csv"):
        load_paysim(paysim)
    sparkov = tmp_path / "sparkov.csv"
    sparkov.write_text(",trans_date_trans_time,cc_num,amt\n0,01-01-2019 00:00,1E+15,1.0\n")
    with pytest.raises(SchemaError, match=r"'merchant'.*sparkov\.csv"):
        load_sparkov(sparkov)
    data.write_text(ECOM_HEADER + "\n1,2015-02-30 03:04:05,1/2/2015 3:04,1,D,SEO,IE,M,30,1,0\n")
    with pytest.raises(
        SchemaError,
        match=r"data\.csv line 2, field 'signup_time': '2015-02-30 03:04:05' is not a time in the format "
        r"'%m/%d/%Y %H:%M'",
    ):
        load_fraud_ecom(data)
    handbook = tmp_path / "handbook.parquet"
    pd.DataFrame({"TRANSACTION_ID": [1], "TX_DATETIME": [pd.Timestamp("2018-04-01")]}).to_parquet(handbook)
    with pytest.raises(SchemaError, match=r"'CUSTOMER_ID'.*handbook\.parquet"):
        load_handbook(handbook)


def test_a_nul_character_in_an_id_is_named_with_its_row() -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": ["t1", "t\x002"],
            "timestamp": [ts("2024-01-01"), ts("2024-01-02")],
            "customer_id": ["c1", "c2"],
            "amount": [1.0, 2.0],
        }
    )
    with pytest.raises(SchemaError, match="transaction_id") as raised:
        normalize_frame(frame)
    assert raised.value.row == 1 and "NUL" in str(raised.value)


def test_fraud_data_re_saved_by_a_spreadsheet_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two-digit years, a header the spreadsheet capitalised, and a last row cut before its class."""
    path = tmp_path / "Fraud_Data.csv"
    path.write_text(
        "User_id,signup_time,purchase_time,purchase_value,device_id,source,browser,sex,age,ip_address,class\n"
        "22058,2/24/15 22:55,4/18/15 2:47,34,QVPSPJUOCKZAR,SEO,Chrome,M,39,732758368.8,0\n"
        "333320,6/7/15 20:39,6/8/15 1:38,16,EOGFQPIZPYXFZ,Ads,Chrome,F,53,350311387.9,1\n"
        "1359,1/1/15 18:52,1/1/15 18:52,15,YSSKYOSJHPPLJ,SEO,Opera,M,53,2621473820,\n"
    )
    with caplog.at_level("WARNING", logger="fraudstream.datasets.fraud_ecom"):
        frame = load_fraud_ecom(path)
    assert frame["timestamp"].min() == ts("2015-01-01 18:52") and len(frame) == 3
    last = frame.set_index("transaction_id").loc["ecom-1359"]
    assert pd.isna(last["is_fraud"]) and pd.isna(last["label_time"])
    assert "1 purchase without a class (the first on line 4): kept, unlabelled" in caplog.text
