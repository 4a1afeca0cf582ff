"""How the dashboard shows times, counts and tables, from API-shaped values, without a browser."""

from __future__ import annotations

import pandas as pd

from fraudstream.dashboard.display import MISSING, fit_widths, local_time, plural, prepare, zone_named

KATHMANDU = zone_named("Asia/Kathmandu")


def test_times_read_in_the_viewers_zone_in_one_format() -> None:
    for value in ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00+00:00", "2026-01-01T10:00:00",
                  pd.Timestamp("2026-01-01 10:00", tz="UTC")):  # fmt: skip
        assert local_time(value, KATHMANDU) == "2026-01-01 15:45:00"
    assert local_time(None, KATHMANDU) == MISSING and local_time(float("nan"), KATHMANDU) == MISSING
    assert zone_named(None).key == "UTC" and zone_named("Mars/Olympus").key == "UTC"


def test_counts_agree_with_their_noun() -> None:
    assert plural(1, "decision") == "1 decision"
    assert plural(0, "decision") == "0 decisions"
    assert plural(12_345, "decision") == "12,345 decisions"
    assert plural(2, "match", "matches") == "2 matches"


def test_a_prepared_table_has_no_none_text_and_local_times() -> None:
    rows = [
        {"created_at": "2026-01-01T10:00:00Z", "via": ["device_id:d1", "ip_address:10.0.0.1"],
         "known_fraud": True, "case_id": 3, "amount": 1.5},
        {"created_at": None, "via": [], "known_fraud": None, "case_id": None, "amount": None},
    ]  # fmt: skip
    shown, config = prepare(pd.DataFrame(rows), KATHMANDU)
    assert list(shown.columns) == ["created at", "via", "known fraud", "case id", "amount"]
    assert shown["created at"].tolist() == ["2026-01-01 15:45:00", None]
    assert shown["via"].tolist() == ["device_id:d1, ip_address:10.0.0.1", None]
    assert shown["known fraud"].tolist() == ["yes", None]
    assert str(shown["case id"].dtype) == "Int64"  # a whole number, not 3.0
    assert "None" not in shown.astype(str).replace({"<NA>": ""}).to_numpy().ravel().tolist()
    assert config["amount"]["type_config"]["format"] == "%.2f"


def test_columns_fit_their_width_cutting_free_text_first() -> None:
    natural = {"time": 140, "id": 90, "reasons": 400, "message": 300}
    assert fit_widths(natural, 1000) == natural  # all fit
    fitted = fit_widths(natural, 600, flexible=["reasons", "message"])
    assert sum(fitted.values()) <= 600 and fitted["time"] == 140 and fitted["id"] == 90
    assert fitted["reasons"] == fitted["message"] == 185
    tight = fit_widths(natural, 300, flexible=["reasons"])  # free text alone cannot make room
    assert sum(tight.values()) <= 300 and min(tight.values()) >= 56
