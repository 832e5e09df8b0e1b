"""python -m bench.ranker_shapes: what a smaller P(interact) graph would cost to run, before
anyone trains it. ranker.onnx (InteractGraph, as exported now) of the MovieLens shapes with
random weights, in variants of RankerConfig, one process, interleaved rounds:

    mlp_128_64      the MLP before 2026-12-06: hidden_dims (128, 64) (the reference)
    default         today's RankerConfig (hidden_dims (64, 32)) with the frozen retrieval score
                    (the user tower inside)
    attention_16    default with attention_dim 16 instead of 32
    mlp_32_16       default with hidden_dims (32, 16)
    no_tower        default without the retrieval score: the frozen user tower leaves the graph
                    (the score would come as an input from retrieval)
    small           default, attention 16, no tower

Only cost: whether a variant ranks as well is for `make eval` (or `python -m
training.evaluate.encoders` with TrainConfig overrides) to say. Prints JSON: per variant
p50/p99 ms over all rounds and p50 / mlp_128_64's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.ranker_split import _model, _time


def variants():
    from training.models import RankerConfig

    base = RankerConfig()
    return {
        "mlp_128_64": (replace(base, hidden_dims=(128, 64)), True),
        "default": (base, True),
        "attention_16": (replace(base, attention_dim=16), True),
        "mlp_32_16": (replace(base, hidden_dims=(32, 16)), True),
        "no_tower": (base, False),
        "small": (replace(base, attention_dim=16), False),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("RECSERVE_DATA_DIR", "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per graph per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from training.export import export_ranker, with_item_features
    from training.models.rating import InteractGraph

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sessions = {}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, score) in variants().items():
            model = _model(args.data_dir, args.seed, config, score)
            n_items = model.item_features.n_items
            rows = rng.choice(np.arange(1, n_items), size=args.history + args.candidates)
            sample = {
                "user_index": np.array([1], dtype=np.int64),
                "profile": np.ones((1, len(model.profile.fields)), dtype=np.int64),
                "history": rows[None, : args.history].astype(np.int64),
                "items": rows[None, args.history :].astype(np.int64),
            }
            graph = InteractGraph(model)
            path = export_ranker(graph, Path(tmp) / f"{name}.onnx", sample)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = with_item_features(graph, sample)
            sessions[name] = (session, {i.name: feeds[i.name] for i in session.get_inputs()})
    samples: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    for session, feeds in sessions.values():
        _time(session, feeds, args.warmup)
    for _ in range(args.rounds):
        for name, (session, feeds) in sessions.items():
            samples[name].append(_time(session, feeds, args.calls))
    result: dict[str, object] = {"setup": {k: str(v) for k, v in vars(args).items()}}
    p50 = {name: float(np.percentile(np.concatenate(r), 50)) for name, r in samples.items()}
    for name, rounds in samples.items():
        ms = np.concatenate(rounds)
        result[name] = {
            "p50_ms": round(p50[name], 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "over_reference_p50": round(p50[name] / p50["mlp_128_64"], 3),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
