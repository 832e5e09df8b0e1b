"""Buy again (datasets with behaviour.repeat): the ranker's purchase-record features, history
negatives, basket-start histories and retrieval's earlier-items candidates."""

from __future__ import annotations

from types import SimpleNamespace

import faiss
import numpy as np
import pandas as pd
import pytest
import torch

from services.contract.types import CandidateList, FilterSpec
from services.retrieval.index import CandidateIndex
from services.retrieval.retriever import Retriever
from training.models.negatives import history_negatives
from training.models.ranker import REPEAT_DECAYS, repeat_features
from training.models.train import basket_items, basket_starts

pytestmark = pytest.mark.timeout(60)


def test_repeat_features_count_and_recency():
    history = torch.tensor([[7, 5, 7, 0]])  # most recent first
    out = repeat_features(history, torch.tensor([[7, 5, 9, 0]]))[0]
    assert out[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # in history (padding never matches)
    assert out[:, 1].tolist() == pytest.approx([np.log(3), np.log(2), 0.0, 0.0])
    d = REPEAT_DECAYS[0]
    assert out[0, 2].item() == pytest.approx(1 + d**2)  # positions 0 and 2
    assert out[1, 2].item() == pytest.approx(d)


def test_history_negatives_skip_the_basket_and_empty_histories():
    history = torch.tensor([[3, 4, 3, 0], [0, 0, 0, 0]])
    basket = torch.tensor([[4, 9], [1, 0]])
    out = history_negatives(history, basket, 50, torch.Generator().manual_seed(0))
    assert set(out[0].tolist()) == {0, 3}  # 4 is in the basket: item 0 instead
    assert set(out[1].tolist()) == {0}


def test_basket_starts_and_items():
    frame = pd.DataFrame({"user_index": [1, 1, 1, 2], "item_index": [5, 6, 7, 8],
                          "order_id": ["a", "a", "b", "b"]})  # fmt: skip
    assert basket_starts(frame["user_index"].to_numpy(), frame["order_id"].to_numpy()).tolist() == [
        0, 0, 2, 3,
    ]  # fmt: skip
    assert basket_items(frame, 2).tolist() == [[5, 6], [5, 6], [7, 0], [8, 0]]


def test_retrieval_adds_earlier_items_best_first():
    embeddings = np.eye(5, dtype=np.float32)
    embeddings[3] *= 0.5
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(5))
    flat.add_with_ids(embeddings[1:], np.arange(1, 5))
    index = CandidateIndex(flat, embeddings, ("a",), [(), ("a",), ("a",), ("a",), ("a",)])
    fake = SimpleNamespace(index=index)
    found = CandidateList(np.array([1], np.int64), np.array([0.9], np.float32))
    query = np.array([0, 0.9, 0.2, 1.0, 0.1], np.float32)
    excluded = np.array([4])  # e.g. exclude_items
    out = Retriever._with_bought(
        fake, found, query, np.array([1, 2, 3, 4]), 2, FilterSpec(), excluded
    )
    assert out.item_indices.tolist() == [1, 3, 2]  # 4 filtered out; 1 not repeated
    assert out.scores.tolist() == pytest.approx([0.9, 0.5, 0.2])
