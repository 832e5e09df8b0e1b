"""`recserve data check DIR` and `recserve train --data DIR`: a shop's own data, no Python.

    recserve data check shop/            # validate + summary; exit 1 with every problem found
    recserve train --data shop/ --artifacts artifacts
    recserve train --data instacart      # a built-in dataset by name (data/datasets/<name>)

DIR is a dataset folder in the data contract's format (docs/data.md). Training needs the
train extra (torch); checking does not load torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA_DIR_HELP = "where built-in datasets live (data/datasets/<name>); default: %(default)s"


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="check a dataset folder against the data contract")
    actions = data.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "check", help="validate a dataset and print a summary (exit 1 with every problem)"
    )
    check.add_argument("dataset", metavar="DIR", help="dataset folder, or a built-in name")
    check.add_argument("--data-dir", type=Path, default=Path("data"), help=DATA_DIR_HELP)
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    data.set_defaults(run=cmd_data)

    train = sub.add_parser("train", help="train every model on a dataset and publish a bundle")
    train.add_argument(
        "--data", required=True, metavar="DIR", help="dataset folder, or a built-in name"
    )
    train.add_argument("--data-dir", type=Path, default=Path("data"), help=DATA_DIR_HELP)
    train.add_argument(
        "--artifacts", type=Path, default=Path("artifacts"), help="default: %(default)s"
    )
    train.add_argument("--version", default=None, help="bundle name (default: UTC timestamp)")
    train.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    train.add_argument("--tiny", action="store_true", help="quick preset (a few epochs)")
    train.add_argument("--no-progress", action="store_true", help="no per-step progress lines")
    train.set_defaults(run=cmd_train)


def _load(dataset: str, data_dir: Path):
    from training.data.builtin import resolve
    from training.data.dataset import load_dataset

    return load_dataset(resolve(data_dir, dataset))


def cmd_data(args: argparse.Namespace) -> int:
    from training.data.contract import DataError
    from training.data.summary import format_summary, summarize

    try:
        data = _load(args.dataset, args.data_dir)
    except DataError as exc:
        print(f"recserve data check: {args.dataset}: invalid", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    summary = summarize(data)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.data.builtin import resolve
    from training.data.contract import DataError

    folder = resolve(args.data_dir, args.data)
    try:
        _load(args.data, args.data_dir)  # refuse bad data before torch is even imported
    except DataError as exc:
        print(f"recserve train: {args.data}: invalid data; no bundle written", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    try:
        from training.steps.runtime import prefer_passive_omp

        prefer_passive_omp()  # before torch loads (the next import)
        from training.pipeline import TrainConfig, build_bundle
    except ImportError as exc:
        print(f"recserve train: needs the train extra (pip install '.[train]'): {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    config = TrainConfig.from_args(args, folder)
    start = time.perf_counter()
    try:
        bundle_dir = build_bundle(config)
    except DataError as exc:
        print(f"recserve train: {args.data}: cannot train; no bundle written", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    print(f"bundle: {bundle_dir} ({time.perf_counter() - start:.1f}s)")
    metrics = manifest.get("metrics", {})
    shown = {k: metrics[k] for k in ("retrieval", "rating") if k in metrics}
    print(json.dumps(shown, indent=2, default=str))
    return 0
