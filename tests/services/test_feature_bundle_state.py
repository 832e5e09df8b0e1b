"""UserRecord.apply_many (batch fold used by both feature stores) equals folding the events one
by one with the original per-event rule, bit for bit (float32 activity included), each history
entry's event time and kind moving with it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contract.features import pad_history
from services.feature.bundle_state import UserRecord

H = 5


def reference_apply(rec: dict, item: int, day: int, value: float, kind: int) -> None:
    """The per-event rule InMemoryFeatureStore used before the batch fold existed (plus the
    event's time and kind in front of history's, for a known item)."""
    if item > 0:
        rec["history"] = np.concatenate(([item], rec["history"][:-1]))
        rec["times"] = np.concatenate(([_time(day, kind)], rec["times"][:-1]))
        rec["kinds"] = np.concatenate(([kind], rec["kinds"][:-1]))
        pos = int(np.searchsorted(rec["seen"], item))
        if pos == rec["seen"].size or rec["seen"][pos] != item:
            rec["seen"] = np.insert(rec["seen"], pos, item)
    pos = int(np.searchsorted(rec["days"], day))
    if pos < rec["days"].size and rec["days"][pos] == day:
        rec["values"] = rec["values"].copy()
        rec["values"][pos] += value
    else:
        rec["days"] = np.insert(rec["days"], pos, day)
        rec["values"] = np.insert(rec["values"], pos, np.float32(value))
    rec["count"] += 1


events = st.lists(
    st.tuples(
        st.integers(0, 12),  # item index, 0 = unknown item
        st.integers(100, 110),  # day
        st.one_of(st.just(1.0), st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False)),
        st.integers(1, 10),  # event token
    ),
    max_size=40,
)


def _time(day: int, kind: int) -> int:
    return day * 86_400 + kind  # a time on that day, told apart by the kind


def _apply(rec: UserRecord, part: list) -> None:
    rec.apply_many(
        [e[0] for e in part], [e[1] for e in part], [e[2] for e in part],
        [_time(e[1], e[3]) for e in part], [e[3] for e in part],
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(base=events, live=events, chunk=st.integers(1, 7))
def test_apply_many_equals_event_by_event(base, live, chunk):
    start = UserRecord.empty(H)
    _apply(start, base)
    ref = {"history": start.history, "seen": start.seen, "days": start.days,
           "values": start.values, "count": start.event_count, "times": start.times,
           "kinds": start.kinds}  # fmt: skip
    for item, day, value, kind in live:
        reference_apply(ref, item, day, value, kind)

    rec = start.copy()
    for i in range(0, len(live), chunk):
        _apply(rec, live[i : i + chunk])

    np.testing.assert_array_equal(rec.history, ref["history"])
    np.testing.assert_array_equal(rec.times, ref["times"])
    np.testing.assert_array_equal(rec.kinds, ref["kinds"])
    known = rec.history > 0
    assert (rec.kinds[known] > 0).all() and (rec.kinds[~known] == 0).all()
    np.testing.assert_array_equal(rec.seen, ref["seen"])
    np.testing.assert_array_equal(rec.days, ref["days"])
    assert rec.values.dtype == np.float32 and ref["values"].dtype == np.float32
    np.testing.assert_array_equal(rec.values, ref["values"])
    assert rec.event_count == ref["count"] == len(base) + len(live)
    assert start.history.size == H and (rec.history == pad_history(rec.history, H)).all()


def test_vectorised_load_records_matches_the_per_user_encoding(tiny_bundle):
    """load_records builds every user at once; the reference is the per-user definition
    (pad_history, np.unique, daily_activity) it replaced, compared array by array."""
    import pyarrow.parquet as pq

    from services.contract.bundle import Bundle
    from services.contract.features import daily_activity, event_tokens, pad_history
    from services.contract.vocab import Vocabulary
    from services.feature.bundle_state import load_records

    bundle = Bundle.load(tiny_bundle)
    spec = bundle.feature_spec
    items = Vocabulary.load(bundle.path("item_ids.npy"))
    records = load_records(bundle, spec, items)
    log = pq.read_table(bundle.path("interactions.parquet")).to_pandas()
    log["row"] = np.arange(len(log))
    log = log.sort_values(["user_id", "timestamp", "row"])
    assert list(records) == list(dict.fromkeys(pq.read_table(
        bundle.path("interactions.parquet"), columns=["user_id"]
    ).column("user_id").to_pylist()))  # fmt: skip
    for user_id, events in log.groupby("user_id", sort=False):
        rec = records[user_id]
        its = items.indices(events["item_id"].tolist())
        known = its[its > 0]
        days, values = daily_activity(events["timestamp"].to_numpy(), events["value"].to_numpy())
        kinds = event_tokens(
            events["event_type"].fillna("") if "event_type" in events else [""] * len(events),
            events["rating"].astype(float), bundle.dataset.rating_scale,
        )[its > 0]  # fmt: skip
        times = events["timestamp"].to_numpy()[its > 0]
        expected = (pad_history(known[::-1], spec.history_len), np.unique(known), days, values,
                    pad_history(times[::-1], spec.history_len),
                    pad_history(kinds[::-1], spec.history_len))  # fmt: skip
        got_all = (rec.history, rec.seen, rec.days, rec.values, rec.times, rec.kinds)
        for got, want in zip(got_all, expected, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=user_id)
            assert got.dtype == want.dtype and not got.flags.writeable
        assert rec.event_count == len(events)
