"""`python -m training.data fetch [--data-dir data] [--force]`: fetch and verify the data sets."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.data.fetch import DataFetchError, fetch_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--force", action="store_true", help="download again even if verified")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
