"""What each history entry was and when: event tokens, the history_age / history_kind inputs
training builds (per example and per user), the transformer that reads them, and its ONNX
export (declared inputs, parity with real ages and kinds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from services.contract.features import (
    EVENT_TOKENS,
    HISTORY_EVENT_INPUTS,
    N_EVENT_TOKENS,
    event_token,
    event_tokens,
    history_ages,
)
from training.export import export_user_tower, parity_max_abs_error
from training.models import TwoTowerConfig, UserTower
from training.models.train import SlidingHistory, latest_history_events, make_examples
from training.models.two_tower import N_TIME_BUCKETS, time_buckets

TIMED = TwoTowerConfig(
    embedding_dim=16, user_id_dim=8, item_id_dim=8, side_dim=4, hidden_dim=16,
    user_encoder="transformer", seq_len=12, seq_dim=16, seq_layers=2, seq_heads=2,
    seq_time=True, seq_kinds=True,
)  # fmt: skip


def token(name: str) -> int:
    return EVENT_TOKENS.index(name)


def test_event_tokens_by_type_and_rating_step() -> None:
    kinds = ["rating", "rating", "purchase", "", "view", "add_to_cart", "RATING", "click"]
    ratings = [5.0, 1.0, np.nan, np.nan, np.nan, np.nan, 0.0, np.nan]
    got = event_tokens(kinds, ratings)
    want = ["rating 5/5", "rating 1/5", "purchase", "other", "view", "other", "rating", "click"]
    assert got.tolist() == [token(w) for w in want]
    # a rating is placed on the dataset's own scale: 7 of 1..10 is step 4 of 5 (round(2.67)=3)
    assert event_token("", 7.0, (1.0, 10.0)) == token("rating 4/5")
    assert event_token("", 10.0, (1.0, 10.0)) == token("rating 5/5")
    assert event_token("", 99.0) == token("rating 5/5")  # clipped to the scale
    assert (got >= 1).all() and (got < N_EVENT_TOKENS).all()


def test_history_ages_unknown_and_never_negative() -> None:
    ages = history_ages(np.array([100, 0, 130]), 120.0)
    assert ages.tolist() == [20.0, -1.0, 0.0]  # a time after the request counts as now


def test_time_buckets_are_log_spaced_with_unknown_apart() -> None:
    seconds = torch.tensor([-1.0, 0.0, 59.0, 60.0, 180.0, 3600.0, 86400.0, 1e12])
    got = time_buckets(seconds).tolist()
    assert got[0] == 0  # unknown
    assert got[1] == got[2] == 1  # under a minute
    assert got[3] == 2 and got[4] == 3  # 1-3 min, 3-7 min
    assert got == sorted(got) and got[-1] == N_TIME_BUCKETS - 1  # capped


def _log() -> pd.DataFrame:
    """Two users; user 1 rates, then buys; user 2 has one event."""
    return pd.DataFrame(
        {
            "user_index": [1, 1, 1, 2],
            "item_index": [5, 6, 7, 8],
            "timestamp": [1_000, 1_060, 4_660, 500],
            "rating": [5.0, 2.0, np.nan, np.nan],
            "event_token": [token("rating 5/5"), token("rating 2/5"), token("purchase"), 1],
            "order_id": ["", "", "", ""],
        }
    )


def test_examples_carry_each_history_entry_age_at_the_event_and_its_kind(ml_catalog) -> None:
    ex = make_examples(ml_catalog, _log())
    h = ml_catalog.spec.history_len
    assert ex["history_age"].shape == (4, h) and ex["history_kind"].shape == (4, h)
    # the third event (t=4660) sees item 6 (3600 s before) then item 5 (3660 s before)
    assert ex["history"][2, :3].tolist() == [6, 5, 0]
    assert ex["history_age"][2, :3].tolist() == [3600.0, 3660.0, -1.0]
    assert ex["history_kind"][2, :3].tolist() == [token("rating 2/5"), token("rating 5/5"), 0]
    assert ex["history_age"][0].max() == -1 and ex["history_kind"][0].max() == 0  # no history
    assert ex["history_age"][3].max() == -1  # user 2's first event: not user 1's history


def test_lazy_columns_equal_the_whole(ml_catalog) -> None:
    log = _log()
    ex = make_examples(ml_catalog, log)
    users, items = log["user_index"].to_numpy(), log["item_index"].to_numpy()
    times, tokens = log["timestamp"].to_numpy(), log["event_token"].to_numpy()
    rows = np.array([2, 0, 3])
    h = ml_catalog.spec.history_len
    ages = SlidingHistory(users, items, h, None, times=times)[rows]
    kinds = SlidingHistory(users, items, h, None, tokens=tokens)[rows]
    np.testing.assert_array_equal(ages.numpy(), ex["history_age"][rows].numpy())
    np.testing.assert_array_equal(kinds.numpy(), ex["history_kind"][rows].numpy())


def test_latest_history_events_at_a_request_time(ml_catalog) -> None:
    now = np.zeros(ml_catalog.n_users)
    now[1] = 5_000.0
    latest = latest_history_events(ml_catalog, _log(), now)
    assert latest["history"][1, :4].tolist() == [7, 6, 5, 0]
    assert latest["history_age"][1, :4].tolist() == [340.0, 3940.0, 4000.0, -1.0]
    assert latest["history_kind"][1, :3].tolist() == [token("purchase"), token("rating 2/5"),
                                                      token("rating 5/5")]  # fmt: skip
    default = latest_history_events(ml_catalog, _log())  # asked at the latest event
    assert default["history_age"][2, 0] == 0.0 and default["history_age"][3].max() == -1


def _tower(catalog, config: TwoTowerConfig = TIMED) -> UserTower:
    torch.manual_seed(0)
    spec = catalog.spec
    tower = UserTower(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        config,
    )
    seq = tower.sequence
    for table in (seq.age, seq.gap, seq.since, seq.kind):
        if table is not None:  # trained-sized, so differences show
            torch.nn.init.normal_(table.weight, std=1.0)
    return tower.eval()


def _sample(catalog, batch: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h = catalog.spec.history_len
    history = np.zeros((batch, h), dtype=np.int64)
    history[:, :9] = rng.integers(1, catalog.n_items, (batch, 9))
    history[0] = 0  # an empty history
    ages = np.sort(rng.uniform(0, 1e7, (batch, h)), axis=1).astype(np.float32)
    ages[history == 0] = -1.0
    kinds = rng.integers(1, N_EVENT_TOKENS, (batch, h))
    kinds[history == 0] = 0
    users = rng.integers(1, catalog.n_users, batch)
    return {"user_index": users, "profile": catalog.user_profiles[users], "history": history,
            "history_age": ages, "history_kind": kinds}  # fmt: skip


def _embed(tower: UserTower, sample: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return tower(
            *(torch.from_numpy(sample[n]) for n in ("user_index", "profile", "history")),
            **{n: torch.from_numpy(sample[n]) for n in HISTORY_EVENT_INPUTS},
        ).numpy()


def test_the_tower_reads_kinds_and_times(ml_catalog) -> None:
    tower, sample = _tower(ml_catalog), _sample(ml_catalog)
    base = _embed(tower, sample)
    kinds = {**sample, "history_kind": np.where(sample["history"] > 0, token("view"), 0)}
    assert np.abs(_embed(tower, kinds) - base)[1:].max() > 1e-3
    later = {**sample, "history_age": sample["history_age"] * 10}  # gaps stretched
    assert np.abs(_embed(tower, later) - base)[1:].max() > 1e-3
    with pytest.raises(ValueError, match="history_age"):
        tower(*(torch.from_numpy(sample[n]) for n in ("user_index", "profile", "history")))


def test_only_the_latest_entry_reads_the_request_clock(ml_catalog) -> None:
    """Shifting every age by the same amount (the same log, asked later) moves only the
    'since the latest' input: with that table at zero, the output does not change."""
    tower, sample = _tower(ml_catalog), _sample(ml_catalog)
    with torch.no_grad():
        tower.sequence.since.weight.zero_()
    shifted = sample["history_age"] + np.float32(8e8) * (sample["history"] > 0)
    moved = _embed(tower, {**sample, "history_age": shifted.astype(np.float32)})
    np.testing.assert_allclose(moved, _embed(tower, sample), atol=1e-5)


def test_onnx_declares_the_event_inputs_and_matches_torch(ml_catalog, tmp_path) -> None:
    import onnxruntime as ort

    tower, sample = _tower(ml_catalog), _sample(ml_catalog)
    path = export_user_tower(tower, tmp_path / "user_tower.onnx", sample)
    names = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
    assert names[-2:] == list(HISTORY_EVENT_INPUTS)
    assert parity_max_abs_error(tower, path, sample) <= 1e-4
    plain = _tower(ml_catalog, TwoTowerConfig(**{**TIMED.__dict__, "seq_time": False,
                                                 "seq_kinds": False}))  # fmt: skip
    path = export_user_tower(plain, tmp_path / "plain.onnx", sample)
    names = {i.name for i in ort.InferenceSession(str(path)).get_inputs()}
    assert not names & set(HISTORY_EVENT_INPUTS)


def test_one_event_token_equals_the_vectorised_tokens() -> None:
    """event_token (the feature service's per-event path, plain Python) and event_tokens (the
    training and bundle-loading path) agree, rounding halves included."""
    kinds = ["rating", "", "purchase", "view", "Click", "add_to_cart"]
    ratings = [np.nan, 0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.0, -2.0]
    for scale in ((1.0, 5.0), (0.5, 5.0), (1.0, 10.0), (3.0, 3.0)):
        for kind in kinds:
            want = event_tokens([kind] * len(ratings), ratings, scale)
            got = [event_token(kind, r, scale) for r in ratings]
            assert got == want.tolist(), (kind, scale)
