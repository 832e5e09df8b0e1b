"""Steps: the seconds each step of a run took, and a progress line after each."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from tqdm import tqdm


class Steps:
    """Seconds per pipeline step; with progress on, `say(name, seconds)` after each one
    (default: one "[train] <step>: <s>" line). bench.synthetic_bundle reuses it."""

    def __init__(self, progress: bool, say: Callable[[str, float], None] | None = None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._say = say or (lambda name, seconds: tqdm.write(f"[train] {name}: {seconds:.1f}s"))

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        if self.progress:
            self._say(name, self.seconds[name])

    def note(self, message: str) -> None:
        """One "[train] ..." line (a skipped step), when progress is on."""
        if self.progress:
            tqdm.write(f"[train] {message}")
