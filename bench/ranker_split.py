"""python -m bench.ranker_split: the P(interact) graph (ranker.onnx) before and after the
split of the MLP's first layer, same weights, one process, interleaved rounds.

A Ranker of the MovieLens shapes (the catalog of data/ml-100k, default RankerConfig, the frozen
retrieval score of a default UserTower, random weights; what `python -m training train --data
movielens` builds, untrained) is exported three ways from the same parameters:

    before       the plain forward: the user part (user id, profile, history mean) expanded to
                 every candidate and concatenated with the candidate's part, all three heads
                 (what ranker.onnx was before)
    split_layer  the MLP's first layer split: the user part through it once per user
                 (Ranker.hidden), all three heads (Ranker.forward()[2])
    after        InteractGraph as exported now: split layer and the interact head alone

Each graph runs on ONNX Runtime (CPU, --threads intra-op threads, sequential) for one user and
--candidates candidates; the rounds alternate the graphs (--calls timed calls each, after a
warm-up), and p50 is over all of a graph's calls. Prints JSON: per graph p50/p99/mean ms and
per-round p50s, after/before ratios, and the graphs' max abs output difference.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.models.ranker import Ranker


class _PlainRanker(Ranker):
    """Ranker with the MLP's first layer not split (the forward before the change)."""

    def hidden(self, user: torch.Tensor, per_candidate: torch.Tensor) -> torch.Tensor:
        user = user.unsqueeze(1).expand(-1, per_candidate.shape[1], -1)
        return self.over(torch.cat([user, per_candidate], dim=-1))


class _ForwardInteract(nn.Module):
    """ranker.onnx as InteractGraph exported it before: the full forward, p_interact only."""

    OUTPUTS = ("p_interact",)

    def __init__(self, ranker: nn.Module) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.ranker(*args)[2]


def _model(data_dir: Path, seed: int, config=None, retrieval_score: bool = True) -> Ranker:
    """A Ranker of the MovieLens shapes with random weights (config: a RankerConfig, default
    the default one; retrieval_score: with the frozen user tower's score, as trained)."""
    from training.data import load_movielens
    from training.encode import build_catalog
    from training.models import RankerConfig, TwoTowerConfig, UserTower
    from training.models.ranker import RetrievalScore

    catalog = build_catalog(load_movielens(data_dir / "ml-100k"))
    spec = catalog.spec
    torch.manual_seed(seed)
    side = (catalog.item_tags, catalog.item_attrs, spec.item_cardinalities)
    tower = UserTower(
        catalog.n_users, catalog.n_items, spec.profile_cardinalities, *side, TwoTowerConfig()
    )
    vectors = np.random.default_rng(seed).normal(size=(catalog.n_items, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    retrieval = RetrievalScore(tower, vectors) if retrieval_score else None
    return Ranker(
        catalog.n_users, catalog.n_items, spec.profile_cardinalities, *side,
        config or RankerConfig(), retrieval,
    ).eval()  # fmt: skip


def _time(session, feeds: dict[str, np.ndarray], calls: int) -> np.ndarray:
    samples = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        session.run(None, feeds)
        samples[i] = time.perf_counter() - t0
    return samples * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("RECSERVE_DATA_DIR", "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per graph per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import onnxruntime as ort

    from training.export import export_ranker, with_item_features
    from training.models.rating import InteractGraph

    model = _model(args.data_dir, args.seed)
    plain = copy.deepcopy(model)
    plain.__class__ = _PlainRanker
    graphs = {
        "before": _ForwardInteract(plain),
        "split_layer": _ForwardInteract(model),
        "after": InteractGraph(model),
    }
    rng = np.random.default_rng(args.seed)
    n_items = model.item_features.n_items
    rows = rng.choice(np.arange(1, n_items), size=args.history + args.candidates, replace=False)
    sample = {
        "user_index": np.array([1], dtype=np.int64),
        "profile": np.ones((1, len(model.profile.fields)), dtype=np.int64),
        "history": rows[None, : args.history].astype(np.int64),
        "items": rows[None, args.history :].astype(np.int64),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sessions, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, graph in graphs.items():
            path = export_ranker(graph, Path(tmp) / f"{name}.onnx", sample)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = with_item_features(graph, sample)
            feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
            sessions[name] = (session, feeds)
            outputs[name] = session.run(None, feeds)[0]
    samples: dict[str, list[np.ndarray]] = {name: [] for name in graphs}
    for session, feeds in sessions.values():
        _time(session, feeds, args.warmup)
    for _ in range(args.rounds):
        for name, (session, feeds) in sessions.items():
            samples[name].append(_time(session, feeds, args.calls))
    result: dict[str, object] = {
        "setup": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ort_version": ort.__version__,
        "max_abs_diff_vs_before": {
            name: float(np.max(np.abs(out - outputs["before"]))) for name, out in outputs.items()
        },
    }
    for name, rounds in samples.items():
        ms = np.concatenate(rounds)
        result[name] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "mean_ms": round(float(ms.mean()), 4),
            "round_p50_ms": [round(float(np.percentile(r, 50)), 4) for r in rounds],
        }
    for name in ("split_layer", "after"):
        result[f"{name}_over_before_p50"] = round(
            result[name]["p50_ms"] / result["before"]["p50_ms"], 3
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
