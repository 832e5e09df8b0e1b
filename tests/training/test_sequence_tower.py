"""The transformer user encoder (TwoTowerConfig.user_encoder="transformer"): shapes, causal
masking, padding and empty histories, ONNX parity with the unchanged user_tower.onnx contract,
and the "auto" choice between the two encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.contract.features import HISTORY_EVENT_INPUTS
from training.export import (
    USER_TOWER_INPUTS,
    USER_TOWER_OUTPUTS,
    export_user_tower,
    parity_max_abs_error,
)
from training.models import TwoTowerConfig, UserTower
from training.models.two_tower import SequenceEncoder

TINY = TwoTowerConfig(
    embedding_dim=16, user_id_dim=8, item_id_dim=8, side_dim=4, hidden_dim=16,
    user_encoder="transformer", seq_len=12, seq_dim=16, seq_layers=2, seq_heads=2,
)  # fmt: skip


def _tower(catalog, config: TwoTowerConfig = TINY) -> UserTower:
    torch.manual_seed(0)
    spec = catalog.spec
    return UserTower(catalog.n_users, catalog.n_items, spec.profile_cardinalities,
                     catalog.item_tags, catalog.item_attrs, spec.item_cardinalities,
                     config).eval()  # fmt: skip


def _inputs(catalog, batch: int = 5, filled: int = 9, seed: int = 0) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    h = catalog.spec.history_len
    history = np.zeros((batch, h), dtype=np.int64)
    history[:, :filled] = rng.integers(1, catalog.n_items, (batch, filled))
    users = rng.integers(1, catalog.n_users, batch)
    return (
        torch.from_numpy(users),
        torch.from_numpy(catalog.user_profiles[users]),
        torch.from_numpy(history),
    )


def test_transformer_tower_gives_unit_vectors_and_has_no_mean_part(ml_catalog) -> None:
    tower = _tower(ml_catalog)
    assert isinstance(tower.sequence, SequenceEncoder)
    with torch.no_grad():
        out = tower(*_inputs(ml_catalog))
    assert out.shape == (5, 16)
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_unknown_encoder_is_refused(ml_catalog) -> None:
    with pytest.raises(ValueError, match="user_encoder"):
        _tower(ml_catalog, TwoTowerConfig(user_encoder="lstm"))


def test_a_position_never_reads_a_more_recent_item(ml_catalog) -> None:
    """Causal in time: the state at recency position i (i = 0 most recent) depends on items
    i, i+1, ... only; changing item 2 changes positions 0..2 and leaves 3.. untouched."""
    tower = _tower(ml_catalog)
    history = _inputs(ml_catalog)[2]
    changed = history.clone()
    changed[:, 2] = (changed[:, 2] % (ml_catalog.n_items - 1)) + 1
    assert (changed[:, 2] != history[:, 2]).all()
    with torch.no_grad():
        states = [
            tower.sequence(tower.history_items(h[:, : TINY.seq_len]), h[:, : TINY.seq_len] > 0)
            for h in (history, changed)
        ]
    np.testing.assert_allclose(states[0][:, 3:].numpy(), states[1][:, 3:].numpy(), atol=1e-6)
    assert not np.allclose(states[0][:, :3].numpy(), states[1][:, :3].numpy(), atol=1e-4)


def test_items_beyond_seq_len_and_padding_do_not_change_the_query(ml_catalog) -> None:
    """Only the seq_len most recent items are read, and a padding slot's content is never
    read by a real position (padding keys are masked)."""
    tower = _tower(ml_catalog)
    user, profile, history = _inputs(ml_catalog, filled=ml_catalog.spec.history_len)
    older = history.clone()
    older[:, TINY.seq_len :] = 1  # every item older than the window replaced
    short = _inputs(ml_catalog, filled=4)[2]
    with torch.no_grad():
        base = tower(user, profile, history)
        np.testing.assert_allclose(tower(user, profile, older).numpy(), base.numpy(), atol=1e-6)
        # Padding content: the same history with other tags/attrs in its padding slots.
        tags, attrs = tower.history_items.lookup(short)
        noisy_tags, noisy_attrs = tags.clone(), attrs.clone()
        noisy_tags[:, 4:] = 1.0
        noisy_attrs[:, 4:] = 1
        np.testing.assert_allclose(
            tower(user, profile, short, noisy_tags, noisy_attrs).numpy(),
            tower(user, profile, short, tags, attrs).numpy(),
            atol=1e-6,
        )


def test_empty_history_is_finite_in_train_and_eval_mode(ml_catalog) -> None:
    tower = _tower(ml_catalog)
    user, profile, history = _inputs(ml_catalog)
    history[1:3] = 0  # two rows with no history at all
    for mode in (False, True):
        tower.train(mode)
        out = tower(user, profile, history)
        assert torch.isfinite(out).all()
        out.sum().backward()
        grads = [p.grad for p in tower.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads)
        tower.zero_grad()
    tower.eval()
    with torch.no_grad():  # empty history: the sequence part is exactly zero
        hist = tower.history_items(history[:, : TINY.seq_len])
        last = tower.sequence.last(hist, history[:, : TINY.seq_len] > 0)
    assert not last[1:3].any() and last[0].abs().sum() > 0


@pytest.mark.parametrize("encoder", ["transformer", "mean"])
def test_onnx_parity_and_contract_are_the_same_for_both_encoders(
    ml_catalog, encoder: str, tmp_path
) -> None:
    import onnx
    import onnxruntime as ort

    tower = _tower(ml_catalog, TwoTowerConfig(**{**TINY.__dict__, "user_encoder": encoder}))
    user, profile, history = _inputs(ml_catalog, batch=7)
    history[0] = 0  # an empty history
    history[1, 1:] = 0  # one item
    sample = {"user_index": user.numpy(), "profile": profile.numpy(), "history": history.numpy()}
    path = export_user_tower(tower, tmp_path / "user_tower.onnx", {k: v[2:4] for k, v in
                                                                   sample.items()})  # fmt: skip
    assert parity_max_abs_error(tower, path, sample) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # the history's events are declared only by a tower that reads them (test_history_events)
    declared = tuple(n for n in USER_TOWER_INPUTS if n not in HISTORY_EVENT_INPUTS)
    assert tuple(i.name for i in session.get_inputs()) == declared
    assert tuple(o.name for o in session.get_outputs()) == tuple(USER_TOWER_OUTPUTS)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if encoder == "transformer":
        assert {"MatMul", "Softmax"} <= ops


@pytest.fixture(scope="module")
def small_features(movielens, ml_catalog):
    """The first 60 users' events (80/20 temporal) as training.steps.features.Features."""
    from training.split import temporal_split
    from training.steps.features import encode

    keep = sorted(movielens.events["user_id"].unique())[:60]
    events = movielens.events[movielens.events["user_id"].isin(keep)]
    split = temporal_split(events, 0.2)
    return encode(movielens, split.train, split.test, ml_catalog.spec.history_len)


def _auto_config(tmp_path):
    from training.steps.config import TrainConfig

    return TrainConfig(artifacts_dir=tmp_path, user_encoder="auto", retrieval_epochs=1,
                       retrieval_batch_size=256, user_seq_len=8, user_seq_layers=1,
                       progress=False)  # fmt: skip


@pytest.mark.parametrize("with_valid", [True, False])
def test_auto_trains_both_encoders_and_keeps_the_better_on_validation(
    small_features, with_valid: bool, tmp_path, movielens
) -> None:
    import dataclasses

    from training.steps.manifest import trained_fields
    from training.steps.two_tower import train_user_tower

    torch.set_num_threads(1)
    f = small_features if with_valid else dataclasses.replace(small_features, valid_ix=None)
    cfg = _auto_config(tmp_path)
    model, info = train_user_tower(cfg, f, repeat=False)
    choice = info["user_encoder"]
    scores = choice["validation"]
    assert set(scores) == {"mean", "transformer"} and choice["mode"] == "auto"
    best = max(scores, key=lambda e: (scores[e]["ndcg_at_10"], e == "mean"))
    assert choice["served"] == best and choice["metric"] == "ndcg_at_10"
    assert info["model"]["user_encoder"] == best
    assert (model.user_tower.sequence is not None) == (best == "transformer")
    if with_valid:  # the validation events, the winner kept as trained
        assert choice["selected_on"] == "validation"
        assert choice["n_selection_events"] == len(f.valid_ix)
    else:  # a held-out slice of train, then the winner refit on all of it
        assert choice["selected_on"].startswith("train holdout")
        assert 0 < choice["n_selection_events"] < len(f.train_ix)
        assert any(k.endswith("(refit on train)") for k in choice["seconds"])
    fields = trained_fields(
        cfg, movielens, f.train_ix, None, None, movielens, has_rating_model=False, metrics={},
        value={}, content=None, two_tower=info, ranker={}, rating={}, seconds={},
    )  # fmt: skip
    assert fields["training"]["user_encoder"]["served"] == best
    assert fields["training"]["user_encoder"]["validation"] == scores


def test_holdout_slice_takes_each_users_last_events(small_features) -> None:
    from training.steps.two_tower import holdout_slice

    train = small_features.train_ix
    fit_ix, held = holdout_slice(train, 0.1)
    assert len(fit_ix) + len(held) == len(train)
    last_fit = fit_ix.groupby("user_index")["timestamp"].max()
    first_held = held.groupby("user_index")["timestamp"].min()
    assert (first_held >= last_fit.reindex(first_held.index)).all()


def test_cli_sets_the_user_encoder() -> None:
    from training.__main__ import config_from_args

    assert config_from_args(["train", "--user-encoder", "auto"]).user_encoder == "auto"


def test_last_computes_the_same_state_as_the_full_sequence(ml_catalog) -> None:
    tower = _tower(ml_catalog)
    history = _inputs(ml_catalog)[2][:, : TINY.seq_len]
    history[0] = 0
    with torch.no_grad():
        hist, valid = tower.history_items(history), history > 0
        full = tower.sequence(hist, valid)[:, 0] * valid[:, :1]
        np.testing.assert_allclose(tower.sequence.last(hist, valid).numpy(), full.numpy(),
                                   atol=1e-6)  # fmt: skip


def test_auto_is_the_default_and_the_tiny_preset_trains_the_mean_tower(tmp_path) -> None:
    from training.steps.config import TrainConfig

    assert TrainConfig().user_encoder == "auto"
    assert TrainConfig(tiny=True).resolved().user_encoder == "mean"
    assert TrainConfig(tiny=True, user_encoder="transformer").resolved().user_encoder == (
        "transformer"
    )
    assert TrainConfig().resolved().user_encoder == "auto"


def test_auto_on_cpu_serves_the_mean_tower_when_the_transformer_is_over_budget(
    small_features, tmp_path, monkeypatch
) -> None:
    import dataclasses

    from training.steps.two_tower import train_user_tower

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.set_num_threads(1)
    n = len(small_features.examples["items"])
    cfg = dataclasses.replace(_auto_config(tmp_path), auto_cpu_transformer_budget=n - 1)
    model, info = train_user_tower(cfg, small_features, repeat=False)
    choice = info["user_encoder"]
    assert choice["served"] == "mean" and model.user_tower.sequence is None
    assert f"{n:,} examples x epochs" in choice["skipped"]["transformer"]
    cfg = dataclasses.replace(cfg, auto_cpu_transformer_budget=n)  # 1 epoch: within budget
    _, info = train_user_tower(cfg, small_features, repeat=False)
    assert "skipped" not in info["user_encoder"]
    assert set(info["user_encoder"]["validation"]) == {"mean", "transformer"}
