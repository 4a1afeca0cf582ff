"""What the Cases and Entities pages show, from API-shaped answers, without a browser."""

from __future__ import annotations

from fraudstream.dashboard.cases import link_graph, linked_frame, queue_frame, working

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
    assert '"customer_id:C-\\"3\\"" [color=red, fontcolor=red];' in dot  # quotes escaped
    assert linked_frame(ENTITY)["customer_id"].tolist() == ['C-"3"', "C-9"]  # fraud first
