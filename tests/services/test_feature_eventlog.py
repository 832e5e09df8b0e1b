"""The feedback event log: framing, torn tails, corruption, rotation, group commit, locking."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contract.errors import ConfigError, InvalidArgument
from services.contract.types import Event, EventKind
from services.feature.eventlog import (
    MAGIC,
    EventLog,
    LogCorruptError,
    LogPosition,
    LogSettings,
    decode_events,
    encode_events,
    list_segments,
    read_events,
    segment_path,
)


def batch(i: int, n: int = 3) -> list[Event]:
    kinds = list(EventKind)
    return [
        Event(f"u{i}", f"item-{i}-{j}", kinds[(i + j) % 4], 1_700_000_000 + i, 4.0, 2.5 * j)
        for j in range(n)
    ]


def write(directory: Path, batches: list[list[Event]], **kw) -> list[LogPosition]:
    log = EventLog(LogSettings(directory, **kw))
    try:
        futures = [log.append(encode_events(b)) for b in batches]
        return [f.result(timeout=30) for f in futures]
    finally:
        log.close()


def logged(directory: Path, start: LogPosition | None = None) -> list[list[Event]]:
    return [events for _end, events in read_events(directory, start)]


@pytest.mark.parametrize("fsync", ["group", "always", "off"])
def test_round_trip_in_order_with_increasing_positions(tmp_path, fsync):
    batches = [batch(i) for i in range(20)]
    ends = write(tmp_path, batches, fsync=fsync)
    assert ends == sorted(ends) and len(set(ends)) == 20
    assert logged(tmp_path) == batches
    assert [end for end, _ in read_events(tmp_path)] == ends


def test_reading_from_a_position_returns_only_later_records(tmp_path):
    batches = [batch(i) for i in range(10)]
    ends = write(tmp_path, batches)
    assert logged(tmp_path, ends[3]) == batches[4:]
    assert logged(tmp_path, ends[-1]) == []


def test_reopen_appends_after_existing_records(tmp_path):
    write(tmp_path, [batch(0)])
    write(tmp_path, [batch(1)])
    assert logged(tmp_path) == [batch(0), batch(1)]


@given(
    st.lists(
        st.builds(
            Event,
            st.text(min_size=1, max_size=30),
            st.text(min_size=1, max_size=30),
            st.sampled_from(list(EventKind)),
            st.integers(0, 2**62),
            st.sampled_from([0.0, 1.0, 4.5, 5.0]),
            st.floats(0, 1e9),
        ),
        max_size=20,
    )
)
@settings(max_examples=50, deadline=None)
def test_payload_round_trips_any_events(events):
    assert decode_events(encode_events(events)) == events


def test_an_id_too_long_to_frame_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="bytes"):
        encode_events([Event("u", "x" * 70_000, EventKind.VIEW, 1)])


def _only_segment(directory: Path) -> Path:
    (segment,) = list_segments(directory)
    return segment_path(directory, segment)


@pytest.mark.parametrize("cut", [1, 5, 13, 20])
def test_torn_tail_is_truncated_and_the_log_stays_appendable(tmp_path, cut):
    write(tmp_path, [batch(i) for i in range(3)])
    path = _only_segment(tmp_path)
    intact = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-cut])
    assert logged(tmp_path) == [batch(0), batch(1)]  # the reader skips the torn tail
    log = EventLog(LogSettings(tmp_path))
    try:
        assert log.truncated_bytes > 0
        assert log.end.offset == path.stat().st_size < intact
        log.append(encode_events(batch(9))).result(timeout=30)
    finally:
        log.close()
    assert logged(tmp_path) == [batch(0), batch(1), batch(9)]


def test_trailing_zeros_after_a_crash_are_a_torn_tail(tmp_path):
    write(tmp_path, [batch(0), batch(1)])
    path = _only_segment(tmp_path)
    path.write_bytes(path.read_bytes() + bytes(4096))
    log = EventLog(LogSettings(tmp_path))
    log.close()
    assert log.truncated_bytes == 4096
    assert logged(tmp_path) == [batch(0), batch(1)]


def test_a_corrupt_record_before_the_tail_is_an_error_naming_file_and_offset(tmp_path):
    ends = write(tmp_path, [batch(i) for i in range(3)])
    path = _only_segment(tmp_path)
    data = bytearray(path.read_bytes())
    data[ends[0].offset + 20] ^= 0xFF  # inside the second record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError) as caught:
        EventLog(LogSettings(tmp_path))
    assert str(path) in str(caught.value) and f"offset {ends[0].offset}" in str(caught.value)
    with pytest.raises(LogCorruptError):
        logged(tmp_path)
    assert path.read_bytes() == bytes(data), "a corrupt log is never rewritten"


def test_a_damaged_header_before_the_tail_is_corruption_not_a_torn_tail(tmp_path):
    ends = write(tmp_path, [batch(i) for i in range(3)])
    path = _only_segment(tmp_path)
    data = bytearray(path.read_bytes())
    data[ends[0].offset] ^= 0x01  # the second record's length
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match=f"offset {ends[0].offset}"):
        EventLog(LogSettings(tmp_path))


def test_segments_rotate_and_damage_in_an_old_segment_is_an_error(tmp_path):
    batches = [batch(i, n=20) for i in range(30)]
    ends = write(tmp_path, batches, segment_bytes=4096)
    segments = list_segments(tmp_path)
    assert len(segments) > 3 and ends[-1].segment == segments[-1]
    assert all(segment_path(tmp_path, s).read_bytes()[:8] == MAGIC for s in segments)
    assert logged(tmp_path) == batches
    middle = next(i for i, e in enumerate(ends) if e.segment == segments[1])
    assert logged(tmp_path, ends[middle]) == batches[middle + 1 :]
    first = segment_path(tmp_path, segments[0])
    first.write_bytes(first.read_bytes()[:-3])  # a torn tail is only legal in the last one
    with pytest.raises(LogCorruptError, match=first.name):
        EventLog(LogSettings(tmp_path))


def test_group_commit_covers_concurrent_appends_with_fewer_fsyncs(tmp_path):
    log = EventLog(LogSettings(tmp_path, fsync="group", group_delay_s=0.002))
    threads_n, per_thread = 8, 40
    results: list[LogPosition] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def worker(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            end = log.append(encode_events(batch(t * 1000 + i, n=1))).result(timeout=60)
            with lock:
                results.append(end)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    log.close()
    total = threads_n * per_thread
    assert len(results) == len(set(results)) == total == log.records
    assert log.fsyncs < total / 2, (log.fsyncs, total)  # measured ~total / threads_n
    assert len(logged(tmp_path)) == total


def test_fsync_always_syncs_every_record(tmp_path):
    log = EventLog(LogSettings(tmp_path, fsync="always"))
    futures = [log.append(encode_events(batch(i))) for i in range(10)]
    [f.result(timeout=30) for f in futures]
    log.close()
    assert log.fsyncs == log.records == 10


def test_callback_runs_in_log_order_before_the_future_resolves(tmp_path):
    log = EventLog(LogSettings(tmp_path))
    seen: list[LogPosition] = []
    futures = [log.append(encode_events(batch(i)), seen.append) for i in range(25)]
    ends = [f.result(timeout=30) for f in futures]
    log.close()
    assert seen == ends == sorted(ends)


def test_one_writer_per_directory(tmp_path):
    log = EventLog(LogSettings(tmp_path))
    try:
        with pytest.raises(ConfigError, match="in use"):
            EventLog(LogSettings(tmp_path))
    finally:
        log.close()
    EventLog(LogSettings(tmp_path)).close()  # released on close


def test_unknown_fsync_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="fsync"):
        LogSettings(tmp_path, fsync="sometimes")


def test_the_log_reads_back_as_canonical_training_events(tmp_path):
    from training.data.feedback import read_feedback
    from training.data.schema import EVENT_COLUMNS

    events = [
        Event("u1", "i1", EventKind.RATING, 30, rating=4.0),
        Event("u1", "i2", EventKind.PURCHASE, 10, value=12.5),
        Event("u2", "i1", EventKind.VIEW, 20),
    ]
    ends = write(tmp_path, [events[:2], events[2:]])
    frame, end = read_feedback(tmp_path)
    assert end == ends[-1]
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert frame["timestamp"].tolist() == [10, 20, 30]  # canonical order: time, then user
    assert frame["item_id"].tolist() == ["i2", "i1", "i1"]
    assert frame["event_type"].tolist() == ["purchase", "view", "rating"]
    assert frame["value"].tolist() == [12.5, 0.0, 0.0]  # money; an engagement base counts one
    assert frame["rating"].isna().tolist() == [True, True, False]
    assert frame["rating"].iloc[2] == 4.0
    assert read_feedback(tmp_path, ends[0])[0]["user_id"].tolist() == ["u2"]
    empty, none = read_feedback(tmp_path / "nothing-here")
    assert len(empty) == 0 and none is None


def test_retrain_plan_puts_feedback_on_known_items_in_train_and_records_the_position(tmp_path):
    import pandas as pd

    from training.data.feedback import plan_retrain, read_feedback
    from training.data.schema import InteractionData, make_events

    base_events = make_events(
        ["a", "a", "a", "b", "b"], ["i1", "i2", "i3", "i1", "i2"], [1, 2, 3, 1, 2]
    )
    items = pd.DataFrame(
        {"item_id": ["i1", "i2", "i3"], "title": ["x"] * 3, "tags": [[]] * 3, "year": [0] * 3}
    )
    users = pd.DataFrame({"user_id": [], "age": [], "gender": [], "occupation": []})
    base = InteractionData(base_events, items, users, "toy", "0" * 64)
    ends = write(
        tmp_path,
        [[Event("new", "i3", EventKind.CLICK, 100), Event("a", "gone", EventKind.VIEW, 101)]],
    )
    plan = plan_retrain(base, *read_feedback(tmp_path), test_fraction=0.3)
    assert plan.split_info["feedback_log"] == {"segment": ends[0].segment, "offset": ends[0].offset}
    assert plan.split_info["feedback_events"] == 1
    assert plan.split_info["feedback_dropped_unknown_items"] == 1
    assert ("new", "i3") in set(zip(plan.train["user_id"], plan.train["item_id"], strict=True))
    assert "gone" not in set(plan.train["item_id"]) | set(plan.data.events["item_id"])
    assert len(plan.train) + len(plan.valid) == len(base_events) + 1
    assert plan.train.loc[plan.train["user_id"] == "new", "value"].tolist() == [1.0]  # no money
    assert plan.data.sha256 != base.sha256 and "new" in set(plan.data.events["user_id"])


def test_a_failed_write_fails_its_batch_with_unavailable_and_stops_the_log(tmp_path):
    import os

    from services.contract.errors import Unavailable

    log = EventLog(LogSettings(tmp_path))
    os.close(log._fd)
    log._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails (EBADF), like EIO
    try:
        with pytest.raises(Unavailable, match="write failed"):
            log.append(encode_events(batch(0))).result(timeout=30)
        with pytest.raises(Unavailable):
            log.append(encode_events(batch(1)))
    finally:
        log.close()
    assert logged(tmp_path) == []


def test_retrain_cli_refuses_a_missing_log_and_names_it(tmp_path, capsys):
    from training.data.__main__ import main

    assert main(["retrain", "--log-dir", str(tmp_path / "absent")]) == 1
    assert str(tmp_path / "absent") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fetch", "--unknown-flag"])  # the fetch command keeps its own arguments
