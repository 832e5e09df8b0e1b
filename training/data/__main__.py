"""`python -m training.data fetch [--data-dir data] [--force]`: fetch and verify the data sets.

`python -m training.data retrain [--log-dir state/feature-log] [--tiny] ...`: base data plus
the feature service's logged feedback -> a new bundle (see training.data.feedback)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.data.fetch import DataFetchError, fetch_all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.data")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser(
        "fetch", help="fetch and verify MovieLens-100K, CDNOW and Instacart; write data/datasets"
    )
    fetch.add_argument("--data-dir", type=Path, default=Path("data"))
    fetch.add_argument("--force", action="store_true", help="download again even if verified")
    retrain = sub.add_parser("retrain", help="base data + logged feedback -> a new bundle")
    retrain.add_argument("--data-dir", type=Path, default=Path("data"))
    retrain.add_argument(
        "--data", default="movielens", help="dataset folder or built-in name (docs/data.md)"
    )
    retrain.add_argument("--log-dir", type=Path, default=Path("state/feature-log"))
    retrain.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    retrain.add_argument("--version", default=None, help="bundle name (default: UTC timestamp)")
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument("--tiny", action="store_true", help="quick preset (a few epochs)")
    retrain.add_argument("--no-progress", action="store_true")
    return parser


def _fetch(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        paths = fetch_all(args.data_dir, force=args.force)
    except DataFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path} (verified)")
    print(f"data ready in {time.perf_counter() - start:.1f}s")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from services.contract.errors import ConfigError
    from training.data.feedback import retrain
    from training.pipeline import TrainConfig

    if not args.log_dir.is_dir():
        print(f"error: no event log at {args.log_dir}", file=sys.stderr)
        return 1
    from training.data.builtin import resolve

    config = TrainConfig.from_args(args, resolve(args.data_dir, args.data))
    start = time.perf_counter()
    try:
        bundle_dir = retrain(args.data_dir, args.log_dir, config)
    except ConfigError as exc:  # a corrupt log names the file and offset
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle: {bundle_dir} ({time.perf_counter() - start:.1f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _fetch(args) if args.command == "fetch" else _retrain(args)


if __name__ == "__main__":
    sys.exit(main())
