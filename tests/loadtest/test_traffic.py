import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.traffic import Population, Traffic, parse_mix


def test_mix_is_parsed_and_normalised():
    assert parse_mix("recommend=8,feedback=1.5,predict=0.5") == pytest.approx(
        {"recommend": 0.8, "feedback": 0.15, "predict": 0.05}
    )
    with pytest.raises(ValueError, match="unknown request kind"):
        parse_mix("recommend=1,buy=1")
    with pytest.raises(ValueError, match="no positive weight"):
        parse_mix("recommend=0")


def test_request_kinds_follow_the_mix():
    traffic = Traffic(Population.synthetic(100, 100), parse_mix("recommend=0.8,feedback=0.2"))
    kinds = [traffic.next()[0] for _ in range(5000)]
    assert kinds.count("recommend") / 5000 == pytest.approx(0.8, abs=0.03)
    assert set(kinds) == {"recommend", "feedback"}


def test_users_follow_the_bundles_activity_distribution_plus_unknown_users(tmp_path):
    # user "a" has 90 events, "b" 10: a real bundle's interactions.parquet in miniature
    users = ["a"] * 90 + ["b"] * 10
    pq.write_table(pa.table({"user_id": users}), tmp_path / "interactions.parquet")
    pq.write_table(
        pa.table({"item_id": ["x", "y"], "popularity": np.array([99, 0], dtype=np.int64)}),
        tmp_path / "items.parquet",
    )
    traffic = Traffic(Population.from_bundle(tmp_path), {"recommend": 1.0}, unknown_users=0.1)
    drawn = [traffic.user() for _ in range(10_000)]
    share = {u: drawn.count(u) / len(drawn) for u in ("a", "b")}
    unknown = sum(u.startswith("loadtest-new-") for u in drawn) / len(drawn)
    assert unknown == pytest.approx(0.1, abs=0.015)
    assert share["a"] == pytest.approx(0.9 * 0.9, abs=0.02)
    assert share["b"] == pytest.approx(0.9 * 0.1, abs=0.015)
    items = [traffic.item() for _ in range(2000)]
    assert items.count("x") / 2000 == pytest.approx(100 / 101, abs=0.02)


def test_requests_are_well_formed():
    traffic = Traffic(Population.synthetic(10, 50), {"recommend": 1.0}, k=20, unknown_users=0)
    rec = traffic.build("recommend")
    assert rec.k == 20 and rec.user_id and rec.filters.exclude_seen
    fb = traffic.build("feedback")
    assert len(fb.events) == 1 and 1 <= fb.events[0].rating <= 5
    pr = traffic.build("predict")
    assert 1 <= len(pr.item_ids) <= 10 and len(set(pr.item_ids)) == len(pr.item_ids)
