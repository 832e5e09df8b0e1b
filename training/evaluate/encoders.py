"""The user-encoder ablation: the mean-pooled user tower against the transformer one (and
"auto", which picks between them on validation), each in a bundle trained on exactly the
evaluation's train events and asked through the served path (training.evaluate.ours: user
tower ONNX + FAISS, then the ranker's P(interact) over the top 200), on the same split and
metrics as `make eval` (MovieLens: per-user temporal 80/20; a basket dataset: each user's last
basket). Also the in-process user-tower cost (Retriever.user_embedding, interleaved rounds).

    python -m training.evaluate.encoders --data-dir data [--data instacart] \\
        [--encoders mean,transformer] [--out reports/encoders_movielens.json]

Only the top-K lists are computed (no references, rating CV, cold items or gateway); the
bundles are trained without the content encoder (cold-item text; it plays no part in a
known user's or item's score).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.data.builtin import resolve
from training.data.dataset import load_dataset


def _log(msg: str) -> None:
    print(msg, flush=True)


def tower_cost(bundles: dict[str, Path], user_ids: list[str], rounds: int = 5) -> dict[str, Any]:
    """p50 / p90 ms of Retriever.user_embedding(state) per bundle, over the same users, in
    interleaved rounds (each round times every bundle on every user)."""
    from services.contract.bundle import Bundle
    from services.feature.store import InMemoryFeatureStore
    from services.retrieval.retriever import Retriever

    served = {}
    for name, path in bundles.items():
        bundle = Bundle.load(path)
        store = InMemoryFeatureStore.from_bundle(bundle)
        served[name] = (Retriever.from_bundle(bundle), [store.get_user(u) for u in user_ids])
    times: dict[str, list[float]] = {name: [] for name in served}
    for _ in range(rounds):
        for name, (retriever, states) in served.items():
            for state in states:
                start = time.perf_counter()
                retriever.user_embedding(state)
                times[name].append((time.perf_counter() - start) * 1e3)
    out = {
        name: {"p50_ms": float(np.percentile(t[len(user_ids):], 50)),  # round 1 is warm-up
               "p90_ms": float(np.percentile(t[len(user_ids):], 90)), "n": len(t) - len(user_ids)}
        for name, t in times.items()
    }  # fmt: skip
    out["history_len"] = {
        name: int(states[0].history.shape[-1]) if len(states) else None
        for name, (_, states) in served.items()
    }
    return out


def parse_variant(variant: str) -> tuple[str, dict[str, Any]]:
    """ "mean" -> ("mean", {}); "mean+user_dropout=0.5" -> ("mean", {"user_dropout": 0.5}):
    an encoder and TrainConfig overrides (numbers parsed, else strings)."""
    encoder, *pairs = variant.split("+")
    extra: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not value:
            raise ValueError(f"variant {variant!r}: expected ENCODER[+KEY=VALUE...]")
        if all(part.isdigit() for part in value.split("x")) and "x" in value:
            extra[key] = tuple(int(part) for part in value.split("x"))  # "64x32" -> (64, 32)
            continue
        try:
            extra[key] = int(value)
        except ValueError:
            try:
                extra[key] = float(value)
            except ValueError:
                extra[key] = value
    return encoder, extra


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.evaluate.ours import OurModel, train_bundle

    data = load_dataset(resolve(args.data_dir, args.data))
    basket = data.config.repeat or args.data != "movielens"
    if args.data == "movielens":
        from training.evaluate import scoring as S
        from training.evaluate.splits import topk_split

        split = topk_split(data.events)
        relevant = S.relevant_items(split.train, split.test)
        users = sorted(relevant)
        train = split.train

        def score(rec: dict[str, list[str]]) -> dict[str, float]:
            row = S.score_topk(rec, relevant, train, data.items)
            return {m: float(row[m]) for m in ("recall@20", "ndcg@10")}

        k, exclude = 100, True
    else:
        from training.evaluate.baskets import (
            K_NDCG,
            K_RECALL,
            Relevant,
            basket_split,
            score_baskets,
        )

        split = basket_split(data.events)
        test_rel = Relevant.of(split.train, split.test)
        users = test_rel.users
        train = split.train

        def score(rec: dict[str, list[str]]) -> dict[str, float]:
            row = score_baskets(rec, test_rel)
            return {m: float(row[m]) for m in ("recall@20", "ndcg@10")}

        k, exclude = max(K_RECALL, K_NDCG), not data.config.repeat
    results: dict[str, Any] = {"dataset": data.source, "sha256": data.sha256, "basket": basket,
                               "n_users": len(users), "systems": {}, "manifest": {},
                               "seconds": {}}  # fmt: skip
    bundles: dict[str, Path] = {}
    for variant in args.encoders.split(","):
        encoder, extra = parse_variant(variant)
        start = time.perf_counter()
        overrides: dict[str, Any] = {"user_encoder": encoder, "content": False, "seed": args.seed}
        overrides.update(extra)
        name = f"encoders-{data.source}-{variant}".replace("=", "-").replace("+", "-")
        bundle = train_bundle(train, data, args.artifacts, name,
                              data_dir=args.data_dir, overrides=overrides)  # fmt: skip
        encoder = variant  # the row's name: the encoder and its overrides
        trained = round(time.perf_counter() - start, 1)
        bundles[encoder] = bundle
        ours = OurModel.load(bundle, split.test)
        lists = {
            "retrieval": ours.retrieve(users, k, exclude_seen=exclude),
            "two_stage": ours.two_stage(users, k, exclude_seen=exclude),
        }
        results["systems"][encoder] = {name: score(rec) for name, rec in lists.items()}
        manifest = json.loads((bundle / "manifest.json").read_text())
        results["manifest"][encoder] = {
            "user_encoder": manifest["training"].get("user_encoder"),
            "two_tower_seconds": manifest["training"]["seconds"].get("train two-tower"),
            "parity": {k: v.get("parity_max_abs_error") for k, v in manifest["models"].items()},
        }
        results["seconds"][encoder] = trained
        if args.session:
            from training.evaluate.session import run_session_check

            check = run_session_check(bundle)
            results.setdefault("session", {})[encoder] = {
                "new_users_moved_up": check["new_users"]["moved_up_share"],
                "known_users_shown": check["known_users"]["shown_share"],
                "examples": check["known_users"]["examples"],
            }
        _log(f"[encoders] {data.source} {encoder}: {json.dumps(results['systems'][encoder])} "
             f"(trained in {trained}s)")  # fmt: skip
    cost_users = users[: args.cost_users]
    results["user_tower_cost"] = tower_cost(bundles, cost_users)
    _log(f"[encoders] user tower cost: {json.dumps(results['user_tower_cost'])}")
    results["command"] = "python -m training.evaluate.encoders " + shlex.join(sys.argv[1:])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate.encoders")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--data", default="movielens")
    parser.add_argument("--encoders", default="mean,transformer",
                        help="comma-separated ENCODER[+KEY=VALUE...] (TrainConfig overrides, "
                        "e.g. mean+user_dropout=0.5)")  # fmt: skip
    parser.add_argument("--session", action="store_true",
                        help="also run training.evaluate.session on each bundle")  # fmt: skip
    parser.add_argument("--artifacts", type=Path, default=Path("runs/eval/encoders"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost-users", type=int, default=200)
    args = parser.parse_args(argv)
    from training.steps.runtime import prefer_passive_omp

    prefer_passive_omp()
    results = run(args)
    out = args.out or Path("reports") / f"encoders_{args.data}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    _log(f"[encoders] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
