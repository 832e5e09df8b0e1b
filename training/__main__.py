"""`python -m training train [--data movielens|DIR] [--data-dir data] [--artifacts artifacts] ...`

Trains every model on one dataset (a folder in the data contract's format, docs/data.md),
publishes artifacts/<version> and prints its path and
offline metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from training.steps.runtime import prefer_passive_omp

if TYPE_CHECKING:
    from training.pipeline import TrainConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train all models and publish a bundle")
    train.add_argument("--data-dir", type=Path, default=Path("data"))
    train.add_argument(
        "--data",
        default="movielens",
        help="dataset folder (docs/data.md) or a built-in name under DATA_DIR/datasets",
    )
    train.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    train.add_argument("--version", default=None, help="bundle name (default: UTC timestamp)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--tiny", action="store_true", help="quick preset (a few epochs)")
    train.add_argument("--retrieval-epochs", type=int, default=None)
    train.add_argument("--ranker-epochs", type=int, default=None)
    train.add_argument("--value-epochs", type=int, default=None)
    train.add_argument("--no-progress", action="store_true")
    train.add_argument(
        "--user-encoder",
        choices=("mean", "transformer", "auto"),
        default=None,
        help="the user tower's history encoder (default: TrainConfig.user_encoder)",
    )
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = _parser().parse_args(argv)
    from training.data.builtin import resolve
    from training.pipeline import TrainConfig

    return TrainConfig.from_args(
        args,
        resolve(args.data_dir, args.data),
        retrieval_epochs=args.retrieval_epochs,
        ranker_epochs=args.ranker_epochs,
        value_epochs=args.value_epochs,
        **({"user_encoder": args.user_encoder} if args.user_encoder else {}),
    )


def main(argv: list[str] | None = None) -> int:
    prefer_passive_omp()  # before torch loads (training.steps.runtime)
    from training import distributed
    from training.pipeline import build_bundle

    config = config_from_args(argv)
    ctx = distributed.init_from_env()  # under torchrun: DDP over WORLD_SIZE processes
    start = time.perf_counter()
    try:
        bundle_dir = build_bundle(config)
    finally:
        distributed.shutdown()
    if ctx is not None and not ctx.is_main:
        return 0
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    print(f"bundle: {bundle_dir} ({time.perf_counter() - start:.1f}s)")
    metrics = manifest["metrics"]
    shown = ("retrieval", "ranker", "rating", "evaluation")
    print(json.dumps({k: metrics[k] for k in shown if k in metrics}, indent=2, default=str))
    value = metrics.get("user_value", {}).get("model")
    if value is not None:
        print(json.dumps({"user_value": value}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
