"""Where a gateway's time goes, from py-spy raw samples: the inclusive share of named frames.

    py-spy record -p PID -d 12 -r 500 -f raw -o gateway.raw --nonblocking
    python -m bench.spy_summary gateway.raw [other.raw ...] [--frame NAME=REGEX ...]

A sample counts for a row when any frame of its stack matches the row's regular expression
(inclusive time, each sample once per row). The default rows split a grpc.aio gateway into
grpc's polling thread, the event loop waiting in epoll, the loop's callbacks, and inside them
recserve's own code (any frame from services/: the interceptor and servicer, and the pipeline's
stage tasks, which run as tasks of their own), the model calls, and what is left: grpc.aio's
per-call glue (callbacks with no recserve frame). Prints a Markdown table, one column per file.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

_OURS = r"\(services/"  # a frame of recserve's own code (py-spy: "name (services/...py:N)")
_CALLBACKS = r"^Handle\._run "
DEFAULT_ROWS: tuple[tuple[str, str], ...] = (
    ("grpc's polling thread (Thread.run)", r"^Thread\.run "),
    ("event loop waiting in epoll", r"^EpollSelector\.select "),
    ("event loop callbacks (Handle._run)", _CALLBACKS),
    ("- recserve's code (a frame under services/ in the callback)", _OURS),
    ("- - the interceptor's handler (servicer + what it awaits inline)", r"^_wrap_unary\.<locals>"),
    ("- - Pipeline stage attempts (their own tasks)", r"^Pipeline\._attempt "),
    ("- - ONNX Runtime (Session.run)", r"^Session\.run "),
    ("- - FAISS search", r"^IndexIDMap2?\.search |replacement_search"),
)
_GLUE = "- grpc.aio per-call glue (callbacks with no recserve frame)"


def frame_shares(path: Path, rows: Sequence[tuple[str, str]]) -> tuple[int, dict[str, float]]:
    """-> (samples, {row: share of samples in [0, 1]}), plus the glue row: callbacks that are
    not recserve's handler."""
    patterns = [(name, re.compile(rx)) for name, rx in rows]
    hits = dict.fromkeys([name for name, _ in rows], 0)
    total = callbacks_only = 0
    ours, callbacks = re.compile(_OURS), re.compile(_CALLBACKS)
    for line in path.read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        # below the loop's callback frame: what the callback runs (the frames above it are the
        # process's main, the same for every sample)
        start = next((i for i, f in enumerate(frames) if callbacks.search(f)), None)
        below = frames[start + 1 :] if start is not None else []
        for name, pattern in patterns:
            scope = below if pattern.pattern == _OURS else frames
            if any(pattern.search(f) for f in scope):
                hits[name] += n
        if start is not None and not any(ours.search(f) for f in below):
            callbacks_only += n
    shares = {name: hits[name] / total if total else 0.0 for name in hits}
    shares[_GLUE] = callbacks_only / total if total else 0.0
    return total, shares


def table(paths: Sequence[Path], rows: Sequence[tuple[str, str]]) -> str:
    results = [frame_shares(p, rows) for p in paths]
    names = [*(name for name, _ in rows), _GLUE]
    head = "| where (inclusive share of samples) | " + " | ".join(p.name for p in paths) + " |"
    lines = [head, "|---|" + "---|" * len(paths)]
    for name in names:
        cells = " | ".join(f"{r[1][name] * 100:.1f}%" for r in results)
        lines.append(f"| {name} | {cells} |")
    lines.append("| samples | " + " | ".join(f"{r[0]:,}" for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("raw", nargs="+", type=Path, help="py-spy record -f raw files")
    p.add_argument(
        "--frame",
        action="append",
        default=[],
        metavar="NAME=REGEX",
        help="a row of your own (replaces the default rows)",
    )
    args = p.parse_args(argv)
    rows = [tuple(f.split("=", 1)) for f in args.frame] if args.frame else list(DEFAULT_ROWS)
    print(table(args.raw, rows))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
