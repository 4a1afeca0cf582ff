"""What the Cases and Entities pages show, from API-shaped answers, without a browser."""

from __future__ import annotations

from fraudstream.dashboard.cases import (
    FRAUD_FILL,
    explanation_frame,
    held_note,
    link_graph,
    linked_frame,
    queue_frame,
    working,
)

CASES = [
    {"id": 7, "group_value": "C-1", "status": "in_review", "assignee": "ana", "priority": 9.5,
     "transactions": 2, "amount": 3700.0, "age_seconds": 7300},
    {"id": 8, "group_value": "C-2", "status": "open", "assignee": None, "priority": 1.2,
     "transactions": 1, "amount": 1200.0, "age_seconds": 42},
]  # fmt: skip
ENTITY = {
    "field": "customer_id",
    "value": "C-1",
    "linked": [{"field": "device_id", "value": "dev-x", "transactions": 2}],
    "shared": [
        {"customer_id": "C-9", "via": ["device_id:dev-x"], "transactions": 1, "known_fraud": False},
        {"customer_id": 'C-"3"', "via": ["device_id:dev-x"], "transactions": 4, "known_fraud": True},
    ],
}


def test_the_queue_keeps_the_apis_order_with_ages_in_words_and_says_who_is_working() -> None:
    frame = queue_frame(CASES)
    assert frame["case"].tolist() == [7, 8] and frame["age"].tolist() == ["2h", "42s"]
    assert working(CASES) == "in review: ana (1)"
    assert working([CASES[1]]) == "nobody is reviewing a case"


def test_the_link_picture_draws_shared_customers_and_marks_fraud() -> None:
    dot = link_graph(ENTITY)
    assert dot.startswith("graph links {") and dot.endswith("}")
    assert '"customer_id:C-1" -- "device_id:dev-x" [label=2];' in dot
    fraud = f'fillcolor="{FRAUD_FILL}"'
    node = next(line for line in dot.splitlines() if line.strip().startswith('"customer_id:C-\\"3\\"" ['))
    assert 'label="customer\\nC-\\"3\\""' in node and fraud in node  # named, quotes escaped, red
    assert fraud not in next(
        line for line in dot.splitlines() if line.strip().startswith('"customer_id:C-9" [')
    )
    assert fraud in next(line for line in dot.splitlines() if line.strip().startswith('"device_id:dev-x" ['))
    frame = linked_frame(ENTITY)
    assert frame["customer"].tolist() == ['C-"3"', "C-9"]  # fraud first
    assert frame["shares"].tolist() == ["device dev-x", "device dev-x"]


def test_the_link_picture_counts_what_it_leaves_out() -> None:
    merchants = [{"field": "merchant_id", "value": f"M{i:02}", "transactions": 20 - i} for i in range(12)]
    dot = link_graph({**ENTITY, "linked": ENTITY["linked"] + merchants})
    assert '"merchant_id:M00"' in dot and '"merchant_id:M04"' in dot  # the busiest five
    assert '"merchant_id:M05"' not in dot
    assert 'label="+7 more merchants"' in dot
    assert '"customer_id:C-1" -- "more:merchant_id" [label=' + str(sum(20 - i for i in range(5, 12))) in dot


def test_an_explanation_reads_as_what_raised_then_what_lowered_the_risk() -> None:
    def said(feature: str, sentence: str, contribution: float, basis: str | None) -> dict[str, object]:
        return {"feature": feature, "description": feature, "value": 1.0, "contribution": contribution,
                "usual": 1.0, "usual_basis": basis, "sentence": sentence}  # fmt: skip

    explanation = {
        "model": "xgboost",
        "raises": [
            said(
                "amount", "amount 250.00, 4.8× this customer's 30-day average (52.10)", 1.2, "this customer's"
            ),
            said("new_device", "device not seen before for this customer", 0.4, None),
        ],
        "lowers": [said("customer_secs_since_first", "customer first seen 41 days ago", -0.6, "median")],
    }
    frame = explanation_frame(explanation)
    assert frame["effect"].tolist() == ["raises risk", "raises risk", "lowers risk"]
    assert frame["why"].tolist()[0] == "amount 250.00, 4.8× this customer's 30-day average (52.10)"
    assert frame["contribution"].tolist() == [1.2, 0.4, -0.6]
    assert explanation_frame(None).empty and list(explanation_frame(None).columns) == list(frame.columns)


def test_a_case_with_held_payments_says_what_its_verdict_does_to_them() -> None:
    decisions = [{"decision": "HOLD"}, {"decision": "FLAG"}, {"decision": "HOLD"}]
    assert held_note({"decisions": decisions}) == (
        "2 payments held for review in this case: a fraud verdict rejects them, a legitimate one "
        "releases them (unless the hold timed out first)"
    )
    assert "1 payment held" in (held_note({"decisions": decisions[:1]}) or "")
    assert held_note({"decisions": decisions[1:2]}) is None
