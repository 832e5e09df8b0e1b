"""Item indices across bundle versions: every item index is a row of one version's item
vocabulary, so a message labelled with version A is translated into version B by item id.

During a hot reload (services.common.reload) the split-mode services switch at slightly
different moments; a service that receives indices of a version it does not serve maps them
into its own version here instead of scoring the wrong items. Unknown ids map to 0 (unknown).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from services.common.bundle import MANIFEST_NAME, Bundle, sha256_file
from services.common.errors import FailedPrecondition
from services.common.reload import ModelHolder
from services.common.types import UserState
from services.common.vocab import Vocabulary

T = TypeVar("T")

MAX_CACHED_VERSIONS = 4


class ItemVocabs:
    """item_ids.npy of any version under `artifacts`, checksum-verified, loaded on first use."""

    def __init__(self, artifacts: Path | str) -> None:
        self.artifacts = Path(artifacts)
        self._vocabs: dict[str, Vocabulary] = {}
        self._tables: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def add(self, version: str, vocab: Vocabulary) -> None:
        with self._lock:
            self._vocabs[version] = vocab
            while len(self._vocabs) > MAX_CACHED_VERSIONS:
                self._vocabs.pop(next(iter(self._vocabs)))
            self._tables.clear()

    def add_bundle(self, bundle: Bundle) -> Vocabulary:
        vocab = Vocabulary.load(bundle.path("item_ids.npy"))
        self.add(bundle.version, vocab)
        return vocab

    def vocab(self, version: str) -> Vocabulary:
        with self._lock:
            found = self._vocabs.get(version)
        if found is not None:
            return found
        root = self.artifacts / version
        if not (root / MANIFEST_NAME).is_file():
            raise KeyError(f"no bundle {version!r} under {self.artifacts}")
        bundle = Bundle.manifest_of(root)  # only item_ids.npy is read; checked below
        path = bundle.path("item_ids.npy")
        if sha256_file(path) != bundle.manifest["files"]["item_ids.npy"]:
            raise KeyError(f"bundle {version}: item_ids.npy checksum mismatch")
        return self.add_bundle(bundle)

    def table(self, src: str, dst: str) -> np.ndarray:
        """int64[rows of src]: src item index -> dst item index (0 where dst lacks the id)."""
        key = (src, dst)
        with self._lock:
            found = self._tables.get(key)
        if found is not None:
            return found
        source, target = self.vocab(src), self.vocab(dst)
        table = np.concatenate(([0], target.indices(source.ids.tolist()))).astype(np.int64)
        with self._lock:
            self._tables[key] = table
        return table

    def remap(self, indices: np.ndarray, src: str, dst: str) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if not src or not dst or src == dst:
            return indices
        table = self.table(src, dst)
        inside = (indices >= 0) & (indices < table.size)
        return np.where(inside, table[np.clip(indices, 0, table.size - 1)], 0)

    def remap_user(self, user: UserState, src: str, dst: str) -> UserState:
        """History keeps its order (unknown items dropped, re-padded); seen stays sorted."""
        if not src or not dst or src == dst:
            return user
        history = self.remap(user.history, src, dst)
        history = history[history > 0]
        padded = np.zeros(user.history.size, dtype=np.int64)
        padded[: history.size] = history[: user.history.size]
        seen = self.remap(user.seen, src, dst)
        return dataclasses.replace(user, history=padded, seen=np.unique(seen[seen > 0]))


class VersionRouter(Generic[T]):
    """Picks the object that serves a request labelled with a bundle version: that version's
    object while the holder still has it (current, or previous within the grace period), else
    the current one with the request's item indices translated into the current version."""

    def __init__(self, holder: ModelHolder[T], vocabs: ItemVocabs | None = None) -> None:
        self.holder = holder
        self.vocabs = vocabs

    def route(
        self, user: UserState, items: np.ndarray | None = None
    ) -> tuple[str, T, UserState, np.ndarray | None]:
        """-> (version, object, user, items), the last two in that version's index space."""
        label = user.bundle_version
        found = self.holder.resolve(label)
        if found is not None:
            return found[0], found[1], user, items
        version, obj = self.holder.live
        if self.vocabs is None:
            # The caller's indices belong to a version this service neither holds nor can map:
            # FAILED_PRECONDITION (the gateway falls back, as for any unusable backend answer).
            raise FailedPrecondition(f"request indexed for bundle {label!r}, serving {version!r}")
        try:
            user = self.vocabs.remap_user(user, label, version)
            if items is not None:
                items = self.vocabs.remap(items, label, version)
        except KeyError as exc:
            raise FailedPrecondition(
                f"cannot map bundle {label!r} onto {version!r}: {exc}"
            ) from None
        return version, obj, dataclasses.replace(user, bundle_version=version), items
