"""The Kafka consumer's bookkeeping, without Kafka: what it may commit, and how often it handed out
each message (kept in the committed offsets' metadata, since Kafka does not count deliveries)."""

from __future__ import annotations

from fraudstream.brokers.kafka._offsets import MAX_RUNS, OffsetTracker, parse_runs


def tracker(metadata: str | None = None, committed: int = -1001) -> OffsetTracker:
    t = OffsetTracker()
    t.assign([0])
    t.read(0, committed, metadata)
    return t


def hand_out(t: OffsetTracker, lo: int, hi: int) -> list[int]:
    for o in range(lo, hi + 1):
        t.consumed(0, o)
    t.hand_out({0: (lo, hi)})
    return [t.deliveries(0, o) for o in range(lo, hi + 1)]


def test_a_batch_handed_out_again_after_a_crash_counts_again_and_new_messages_start_at_one() -> None:
    first = tracker(committed=-1001)  # a new group: no commit yet
    assert hand_out(first, 0, 4) == [1] * 5
    assert first.hand_out({}) == {} and first.metadata(0, 0) == "0-5:1"
    after_one_crash = tracker(first.metadata(0, 0), committed=0)  # what the next worker reads
    assert hand_out(after_one_crash, 0, 6) == [2, 2, 2, 2, 2, 1, 1]  # two more arrived meanwhile
    assert after_one_crash.metadata(0, 0) == "0-5:2,5-7:1"
    after_two = tracker(after_one_crash.metadata(0, 0), committed=0)
    assert hand_out(after_two, 0, 6) == [3, 3, 3, 3, 3, 2, 2]
    assert after_two.metadata(0, 0) == "0-5:3,5-7:2"


def test_the_commit_to_write_before_processing_never_passes_a_message_in_flight() -> None:
    fresh = tracker()  # a group with no commit: it started at the earliest offset
    fresh.consumed(0, 10)
    assert fresh.hand_out({0: (10, 10)}) == {0: 10}
    for o in range(11, 20):  # handed out while 10 is still in flight (its batch failed, say)
        fresh.consumed(0, o)
    assert fresh.hand_out({0: (11, 19)}) == {0: 10}
    assert fresh.ack([(0, 10)]) == {0: 11} and fresh.floors([0]) == {0: 11}
    resumed = tracker("", committed=7)
    resumed.consumed(0, 7)
    assert resumed.hand_out({0: (7, 7)}) == {0: 7}
    assert resumed.hand_out({1: (0, 3)}) == {} and resumed.floors([1]) == {}  # not ours
    assert tracker().floors([0]) == {}  # no commit and nothing in flight: nothing to commit


def test_acked_messages_leave_the_counts_and_the_rest_keep_theirs() -> None:
    t = tracker("0-10:2", committed=0)
    assert hand_out(t, 0, 9) == [3] * 10
    offsets = t.ack([(0, o) for o in range(4)])
    assert offsets == {0: 4} and t.metadata(0, 4) == "4-10:3"
    t.committed(offsets)
    assert t.metadata(0, 0) == "4-10:3" and t.deliveries(0, 2) == 1


def test_counts_split_where_batches_overlap_and_merge_where_they_agree() -> None:
    t = tracker("0-4:1,4-8:2", committed=0)
    assert hand_out(t, 2, 5) == [2, 2, 3, 3]
    assert t.metadata(0, 0) == "0-2:1,2-4:2,4-6:3,6-8:2"
    assert hand_out(t, 0, 1) == [2, 2]
    assert t.metadata(0, 0) == "0-4:2,4-6:3,6-8:2"


def test_runs_are_capped_by_merging_the_oldest_upwards() -> None:
    t = tracker(",".join(f"{2 * i}-{2 * i + 1}:{i % 3 + 1}" for i in range(MAX_RUNS + 10)), committed=0)
    hand_out(t, 1000, 1000)
    runs = parse_runs(t.metadata(0, 0), 0)
    assert len(runs) == MAX_RUNS and runs[-1] == (1000, 1001, 1)
    assert runs[0][2] == 3  # merged runs keep the highest count: a message is never counted low


def test_metadata_another_client_wrote_is_ignored() -> None:
    assert parse_runs("written by a Java app", 0) == []
    assert parse_runs("0-5:2,5-9:x", 0) == []
    assert parse_runs("0-5:2,5-9:1", 6) == [(6, 9, 1)]  # runs below the commit are done with
    assert parse_runs(None, -1001) == [] and parse_runs("", 3) == []


def test_a_release_rewinds_without_counting_and_holds_the_commit_before_it() -> None:
    t = tracker("0-4:2", committed=0)
    assert hand_out(t, 0, 9) == [3, 3, 3, 3, 1, 1, 1, 1, 1, 1]
    t.ack([(0, o) for o in range(4)])
    assert t.releasing([(0, 6), (0, 8), (1, 3)]) == {0: 6}
    t.released(0, 6)
    assert t.metadata(0, 0) == "0-4:3,4-6:1"  # 6..9 were not tried: their hand-out is not counted
    assert t.floors([0]) == {0: 4}  # 4 and 5 are still in flight
    t.ack([(0, o) for o in range(4, 10)])  # a late ack of what was released commits nothing past it
    assert t.floors([0]) == {0: 6}
    assert hand_out(t, 6, 9) == [1, 1, 1, 1]
