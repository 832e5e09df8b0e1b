"""The production model classes (training.models) sized for a synthetic catalog, with weights
set from the synthetic geometry instead of trained: no training run at 1M x 1M fits the
2-core bench box, and what a scale benchmark needs is the served graphs' size and compute.

User tower (training.models.UserTower, unchanged graph): id tables hold the synthetic vectors
(user row u = the user's taste vector, history item row i = item i's embedding) and the
over-MLP is set to the identity on them, using relu(x) - relu(-x) = x through its hidden
layer: embedding = l2norm(user + mean(history) + 0.5 * most recent item + cold bias).
So a user's query sits near the items they interacted with, and IVF recall is measured on
realistic queries. Profile and item side features are in the graph but weighted zero.

Ranker (training.models.Ranker, the same graph as the MovieLens bundle's implicit ranker,
target attention over the history and the frozen retrieval score included): default seeded
initialisation, except that the interact head is zeroed so p_interact = sigmoid(retrieval
score / 0.07); rating and p_positive come from its own (untrained) rating and likes heads.
The MovieLens bundle's explicit-rating blend (BPMF + AutoRec) is left out: AutoRec fits on a
dense item x user matrix (1M x 1M) with an encoder over users, and both tables exported at
1M users (AutoRec 500 x 1M, BPMF 600 x 1M floats) exceed protobuf's 2 GB ONNX limit alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.encode import EncodedCatalog
from training.models import Ranker, RankerConfig, TwoTowerConfig, UserTower
from training.models.ranker import RetrievalScore

USER_WEIGHT, HISTORY_WEIGHT, RECENT_WEIGHT, COLD_WEIGHT = 1.0, 1.0, 0.5, 0.05


def _with_zero_row(vectors: np.ndarray) -> torch.Tensor:
    out = np.zeros((vectors.shape[0] + 1, vectors.shape[1]), dtype=np.float32)
    out[1:] = vectors
    return torch.from_numpy(out)


@torch.no_grad()
def user_tower(
    catalog: EncodedCatalog,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    cold_direction: np.ndarray,
) -> UserTower:
    """UserTower whose output is l2norm(a * user + b * mean(history) + c * recent + cold).

    user_vectors float32[n_users, D] / item_vectors float32[n_items, D] in vocabulary order
    (row i + 1); cold_direction float32[D]: where a user with no id and no history lands."""
    dim = item_vectors.shape[1]
    spec = catalog.spec
    config = TwoTowerConfig(embedding_dim=dim, user_id_dim=dim, item_id_dim=dim, hidden_dim=2 * dim)
    tower = UserTower(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        config,
    )
    tower.user_id.weight.copy_(_with_zero_row(user_vectors))
    tower.history_items.item_id.weight.copy_(_with_zero_row(item_vectors))
    # Feature layout (UserTower.forward): [user id | profile | mean(history) | history[0]],
    # each history part = [item id (D) | tags | year].
    hist_width = tower.history_items.out_dim
    user_at, mean_at = 0, dim + tower.profile.out_dim
    recent_at = mean_at + hist_width
    select = torch.zeros(dim, mean_at + 2 * hist_width)
    eye = torch.eye(dim)
    select[:, user_at : user_at + dim] = USER_WEIGHT * eye
    select[:, mean_at : mean_at + dim] = HISTORY_WEIGHT * eye
    select[:, recent_at : recent_at + dim] = RECENT_WEIGHT * eye
    first, second = tower.over[0], tower.over[2]
    first.weight.copy_(torch.cat([select, -select]))
    first.bias.zero_()
    second.weight.copy_(torch.cat([eye, -eye], dim=1))
    second.bias.copy_(torch.as_tensor(COLD_WEIGHT * cold_direction, dtype=torch.float32))
    return tower.eval()


@torch.no_grad()
def ranker(
    catalog: EncodedCatalog, tower: UserTower, item_embeddings: np.ndarray, seed: int = 0
) -> Ranker:
    """Ranker (with the frozen retrieval score) whose p_interact orders by that score."""
    spec = catalog.spec
    torch.manual_seed(seed)
    model = Ranker(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        RankerConfig(),
        RetrievalScore(tower, item_embeddings),
    )
    heads: nn.Linear = model.heads
    heads.weight[0].zero_()  # interact logit = retrieval_weight (1 / 0.07) * score
    heads.bias[0] = 0.0
    return model.eval()


@torch.no_grad()
def embed_users(tower: UserTower, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """float32[B, D]: the user tower's outputs for user inputs (user_index, profile, history)."""
    out = tower(*(torch.from_numpy(inputs[k]) for k in ("user_index", "profile", "history")))
    return out.numpy().astype(np.float32)
