"""External id <-> row index vocabularies shipped in a bundle (.npy of str, no pickle)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


class Vocabulary:
    """Row 0 is reserved for unknown ids; known ids occupy rows 1..len(ids)."""

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids = np.asarray(["", *ids], dtype=str)
        self._index = {s: i for i, s in enumerate(self._ids.tolist()) if i > 0}
        if len(self._index) != len(self._ids) - 1:
            raise ValueError("vocabulary ids must be unique and non-empty")

    def __len__(self) -> int:
        """Number of rows, including the unknown row 0."""
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._index

    def index(self, external_id: str) -> int:
        return self._index.get(external_id, 0)

    def indices(self, external_ids: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._index.get(s, 0) for s in external_ids), dtype=np.int64)

    def id_of(self, row: int) -> str:
        return str(self._ids[row])

    def ids_of(self, rows: np.ndarray) -> list[str]:
        return self._ids[np.asarray(rows, dtype=np.int64)].tolist()

    @property
    def ids(self) -> np.ndarray:
        """All known ids (rows 1..), as a str array."""
        return self._ids[1:]

    def save(self, path: Path) -> None:
        np.save(path, self.ids, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(np.load(path, allow_pickle=False).tolist())
