"""`make eval-external`'s sequential peers (training.external.baselines: SASRec, GRU4Rec) and the
next-basket mode, plus the peers tables of the reports (training.evaluate.report_peers).

The RecBole tests run only where recbole is importable (.venv-external); the main venv and CI
do not install it, so they skip there. The rest is plain numpy/pandas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import make_events
from training.evaluate.baskets import basket_split
from training.evaluate.report_peers import (
    basket_peers_section,
    movielens_peers_section,
    peers_table,
)
from training.evaluate.splits import topk_split
from training.external import baselines as X

pytestmark = pytest.mark.timeout(300)
N_ITEMS = 30


def _walks(n_users: int = 40, length: int = 10, seed: int = 0) -> pd.DataFrame:
    """Each user steps through a cycle of N_ITEMS items from a random start: the next item is
    always (previous + 1) mod N_ITEMS, something only a sequence model can learn."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for t in range(length):
            users.append(f"u{u}")
            items.append(f"i{(start + t) % N_ITEMS}")
            stamps.append(1_000_000 + 100 * t + u)
    return make_events(pd.Series(users), pd.Series(items), pd.Series(stamps))


def _topk_task(events: pd.DataFrame) -> X.Task:
    split = topk_split(events)
    catalog = pd.DataFrame({"item_id": [f"i{j}" for j in range(N_ITEMS)] + ["never_bought"]})
    space = X.Space.of(events, catalog)
    return X.Task("synthetic", space, split.fit, split.valid, split.train, split.test,
                  "ndcg_at_10", "test", exclude_seen=True)  # fmt: skip


def test_time_ordered_sequences_keep_the_log_order_on_ties() -> None:
    events = make_events(
        pd.Series(["a", "b", "a", "a"]), pd.Series(["x", "y", "z", "w"]),
        pd.Series([20, 5, 10, 10]),
    )  # fmt: skip
    assert X.user_sequences(events) == {"a": ["z", "w", "x"], "b": ["y"]}
    assert X.user_sequences(events, max_len=2)["a"] == ["w", "x"]


def test_training_windows_make_every_later_item_a_target_once() -> None:
    inputs, targets = X.training_windows([[1, 2, 3, 4, 5], [7], [8, 9]], max_len=3)
    assert inputs.tolist() == [[1, 2, 3], [4, 0, 0], [8, 0, 0]]
    assert targets.tolist() == [[2, 3, 4], [5, 0, 0], [9, 0, 0]]
    # Each target follows its input position; padding (0) has no target.
    assert sorted(targets[targets > 0].tolist()) == [2, 3, 4, 5, 9]


def test_next_basket_scoring_allows_bought_items() -> None:
    rows = [("u1", "milk", 0, "o1"), ("u1", "bread", 0, "o1"), ("u1", "milk", 1, "o2"),
            ("u1", "jam", 2, "o3"), ("u1", "milk", 2, "o3"),
            ("u2", "tea", 0, "o4"), ("u2", "tea", 1, "o5"), ("u2", "jam", 2, "o6")]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user", "item", "day", "order"])
    events = make_events(frame["user"], frame["item"], frame["day"] * 86_400,
                         order_id=frame["order"])  # fmt: skip
    split = basket_split(events)
    space = X.Space.of(events, pd.DataFrame({"item_id": ["bread", "jam", "milk", "tea"]}))
    task = X.Task("toy", space, split.fit, split.valid, split.train, split.test, "ndcg@10", "t",
                  exclude_seen=False)  # fmt: skip
    milk, jam = space.items["milk"], space.items["jam"]

    def scores(rows: np.ndarray) -> np.ndarray:
        s = np.zeros((len(rows), len(space.items)))
        s[:, milk], s[:, jam] = 2.0, 1.0  # milk was bought before by u1: still ranked
        return s

    test = task.score_test(scores)
    assert test["n_users"] == 2.0
    # u1's basket {jam, milk}: both in the top 2; u2's {jam}: at rank 2.
    assert test["recall@20"] == pytest.approx(1.0)
    assert test["ndcg@10"] == pytest.approx((1.0 + 1.0 / np.log2(3)) / 2)
    assert set(test) >= {"repeat_recall@20", "new_recall@20"}


def test_peers_tables_put_sequential_models_beside_the_references(tmp_path: Path) -> None:
    entries = [
        {"library": "implicit", "version": "0.7.3", "model": "ALS", "params": {"factors": 32},
         "valid": {"ndcg_at_10": 0.17}, "metrics": {"recall_at_20": 0.2, "ndcg_at_10": 0.21},
         "seconds": 9.0},
        {"library": "scikit-surprise", "model": "SVD", "metrics": {"rmse": 0.93}},
        {"library": "recbole", "version": "1.2.1", "model": "SASRec",
         "params": {"hidden_size": 64, "epochs": 7, "training": "x"},
         "valid": {"ndcg_at_10": 0.23}, "metrics": {"recall_at_20": 0.25, "ndcg_at_10": 0.26},
         "seconds": 100.0},
    ]  # fmt: skip
    path = tmp_path / "external_baselines.json"
    path.write_text(json.dumps(entries))
    systems = {"ease": {"recall@20": 0.208, "ndcg@10": 0.2085}, "popularity": {"ndcg@10": 0.1}}
    text = "\n".join(movielens_peers_section(path, systems))
    assert "| EASE (ref) | this report | 0.2080 | 0.2085 |" in text
    assert "recbole 1.2.1 SASRec | sequential | 0.2500 | 0.2600 | 0.2300" in text
    assert "SVD" not in text and "popularity" not in text and '"training"' not in text
    # No sequential entry yet: eval.md stays as it was.
    path.write_text(json.dumps(entries[:2]))
    assert movielens_peers_section(path, systems) == []
    basket = basket_peers_section(path, {"ease": {"recall@20": 0.3, "ndcg@10": 0.2}})
    assert any("implicit 0.7.3 ALS | non-sequential" in line for line in basket)
    assert basket_peers_section(tmp_path / "missing.json", {}) == []
    assert len(peers_table([], {})) == 2


# --- RecBole (only in .venv-external) ------------------------------------------------------------


@pytest.fixture
def recbole_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("recbole", reason="recbole lives in .venv-external (make eval-external)")
    import torch

    torch.set_num_threads(1)
    budget = X.SeqBudget(max_epochs=25, patience=25, max_seconds=60, batch_size=8)
    monkeypatch.setitem(X.SEQ_BUDGETS, "synthetic", budget)
    monkeypatch.setattr(X, "SEQ_GRID", {
        "SASRec": [{"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1,
                    "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1,
                    "learning_rate": 1e-2}],
        "GRU4Rec": [{"embedding_size": 16, "hidden_size": 16, "num_layers": 1,
                     "dropout_prob": 0.1, "learning_rate": 1e-2}],
    })  # fmt: skip


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec"])
def test_sequential_models_learn_the_next_item_on_our_split(
    recbole_cpu: None, tmp_path: Path, model_name: str
) -> None:
    task = _topk_task(_walks())
    out = X.run_sequential(model_name, task, tmp_path / model_name)
    assert out["n_configs_tried"] == 1 and out["params"]["loss_type"] == "CE"
    assert out["metrics"]["n_users"] == 40
    assert 1 <= out["params"]["epochs"] <= 25
    # The next item is fully determined by the last one: far above chance (10/29 at best for
    # recall@20 of a history-free ranking of 2 relevant items among ~22 unseen ones).
    assert out["metrics"]["ndcg_at_10"] > 0.5, out


def test_all_positions_matches_recbole_forward_and_ids_map_back(
    recbole_cpu: None, tmp_path: Path
) -> None:
    import torch

    events = _walks(n_users=10, length=6)
    task = _topk_task(events)
    X._write_sequence_atomic(tmp_path, "tune", task.fit)
    cwd = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        for name in ("SASRec", "GRU4Rec"):
            one_epoch = X.SeqBudget(max_epochs=1)
            model, dataset, _, _ = X._seq_train(name, X.SEQ_GRID[name][0], tmp_path, "tune",
                                                task.fit, one_epoch, 1, None)  # fmt: skip
            model.eval()
            seq = torch.as_tensor([[3, 1, 2, 0, 0], [1, 2, 3, 4, 5]])
            length = torch.as_tensor([3, 5])
            with torch.no_grad():
                every = X.all_positions(model, seq)
                last = model.forward(seq, length)
            assert torch.allclose(every[torch.arange(2), length - 1], last, atol=1e-5)
            # Our item order <-> RecBole's ids: the column of item t in our space is RecBole's
            # score for token t; the catalog item nobody bought scores -1e9.
            seqs = X.user_sequences(task.fit)
            scores = X._seq_scores(model, dataset, task.space, seqs)(np.asarray([0]))
            user = sorted(task.space.users, key=task.space.users.get)[0]
            ids = dataset.token2id("item_id", seqs[user])
            from recbole.data.interaction import Interaction

            with torch.no_grad():
                direct = model.full_sort_predict(Interaction({
                    model.ITEM_SEQ: torch.as_tensor([list(ids) + [0] * (50 - len(ids))]),
                    model.ITEM_SEQ_LEN: torch.as_tensor([len(ids)]),
                })).numpy()[0]  # fmt: skip
            for token in ("i0", "i7"):
                col = task.space.items[token]
                assert scores[0, col] == pytest.approx(direct[dataset.token2id("item_id", token)],
                                                       rel=1e-5)  # fmt: skip
            assert scores[0, task.space.items["never_bought"]] == -1e9
    finally:
        os.chdir(cwd)
