"""Bring your own split with your own item metadata: any ids, validated by the data contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.contract import DataError
from training.data.schema import make_events
from training.evaluate.byo import bring_your_own, byo_dataset
from training.evaluate.io import write_events

pytestmark = pytest.mark.timeout(300)
DAY = 86_400


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 shoppers over 30 SKUs with ratings; each user's last 3 events are the test."""
    rng = np.random.default_rng(3)
    rows = []
    for u in range(40):
        items = (u % 3) * 10 + rng.integers(0, 12, 15)
        for n, i in enumerate(items):
            rows.append((f"shopper-{u}", f"SKU-{i % 30:03d}", 1_700_000_000 + n * 6 * DAY + u,
                         float(rng.integers(1, 6))))  # fmt: skip
    events = make_events(*zip(*[(r[0], r[1], r[2]) for r in rows], strict=True),
                         rating=np.asarray([r[3] for r in rows], np.float32))  # fmt: skip
    last = events.groupby("user_id").cumcount(ascending=False) < 3
    folder = tmp_path_factory.mktemp("byo")
    write_events(events[~last], folder / "train.tsv")
    write_events(events[last], folder / "test.tsv")
    pd.DataFrame({
        "item_id": [f"SKU-{i:03d}" for i in range(30)],
        "title": [f"Thing {i}" for i in range(30)],
        "tags": [f"aisle{i // 10}" for i in range(30)],
    }).to_csv(folder / "items.csv", index=False)  # fmt: skip
    return folder


def test_side_tables_come_from_the_contract_files(split: Path) -> None:
    data = byo_dataset(split / "train.tsv", items=split / "items.csv")
    assert len(data.items) == 30 and data.items["tags"].iloc[0] == ["aisle0"]
    bare = byo_dataset(split / "train.tsv")  # ids only: the catalog is the train file's items
    assert set(bare.items["item_id"]) == set(bare.events["item_id"])


def test_bad_metadata_is_refused_like_data_check(split: Path, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\nSKU-000,x\n")  # the others are missing
    with pytest.raises(DataError, match="item not in the items file"):
        byo_dataset(split / "train.tsv", items=tmp_path / "items.csv")


def test_bring_your_own_answers_and_scores_any_ids(split: Path, tmp_path: Path) -> None:
    scores = bring_your_own(split / "train.tsv", split / "test.tsv", tmp_path / "out",
                            artifacts_dir=tmp_path / "art", tiny=True,
                            items=split / "items.csv")  # fmt: skip
    assert {"ours", "popularity", "item_knn"} <= set(scores)
    # users whose test holds an item new to them (relevant_items drops repeats of train items)
    assert 0.0 <= scores["ours"]["recall@20"] <= 1.0 and 0 < scores["ours"]["n_users"] <= 40
    assert "rmse" in scores["ours"]
    top = pd.read_csv(tmp_path / "out" / "topk.tsv", sep="\t", header=None)
    assert top[0].nunique() == 40 and top[1].str.startswith("SKU-").all()
    assert (tmp_path / "out" / "predictions.tsv").is_file()
