"""Bring your own split: train ours on an outside train file, answer and score its test file.

    scores = bring_your_own(train_tsv, test_tsv, out_dir, items=Path("shop/items.csv"))

The train/test files are TSV (training.evaluate.io). Item and user metadata come from the data
contract (docs/data.md): `dataset` (a dataset folder or built-in name: its items, users and
dataset.toml; its events are not used), or `items` / `users` files and a `config` dataset.toml,
or nothing (ids only). They are validated exactly as `recserve data check` validates, against
the train file's events, so an outside system can be compared on any data set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from training.data.builtin import resolve
from training.data.contract import CONFIG_FILE
from training.data.dataset import load_dataset
from training.data.schema import InteractionData
from training.data.tables import find_file
from training.evaluate import references as R
from training.evaluate import scoring as S
from training.evaluate.io import (
    read_events,
    read_predictions,
    read_topk,
    write_predictions,
    write_topk,
)

K = 100


def byo_dataset(
    train_path: Path,
    *,
    data_dir: Path = Path("data"),
    dataset: str | None = None,
    items: Path | None = None,
    users: Path | None = None,
    config: Path | None = None,
) -> InteractionData:
    """The train file's events with the given side tables, as one validated dataset."""
    train = read_events(Path(train_path))
    base = resolve(data_dir, dataset) if dataset else None
    sides = {
        "items": items or (find_file(base, "items", None) if base else None),
        "users": users or (find_file(base, "users", None) if base else None),
    }
    config = config or (base / CONFIG_FILE if base and (base / CONFIG_FILE).is_file() else None)
    with tempfile.TemporaryDirectory(prefix="byo-") as tmp:
        folder = Path(tmp)
        columns = ["user_id", "item_id", "timestamp"]
        if train["rating"].notna().any():
            columns.append("rating")
        train[columns].to_csv(folder / "events.csv", index=False)
        for table, path in sides.items():
            if path is not None:
                suffix = ".parquet" if str(path).endswith(".parquet") else ".csv"
                os.symlink(Path(path).resolve(), folder / f"{table}{suffix}")
        if config is not None:
            shutil.copyfile(config, folder / CONFIG_FILE)
        data = load_dataset(folder)
    if not len(data.items):  # ids only: the catalog is what the train file names
        ids = sorted(data.events["item_id"].astype(str).unique())
        data = replace(data, items=pd.DataFrame({"item_id": ids, "tags": [[] for _ in ids]}))
    return data


def bring_your_own(
    train_path: Path,
    test_path: Path,
    out_dir: Path,
    data_dir: Path = Path("data"),
    artifacts_dir: Path = Path("runs/eval/artifacts"),
    *,
    tiny: bool = False,
    dataset: str | None = None,
    items: Path | None = None,
    users: Path | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    """Train ours on an external train file; export our top-100 lists and rating predictions for
    its test users (and score them, and the references, on its test file)."""
    from training.evaluate.ours import OurModel, train_bundle
    from training.evaluate.run import reference_lists

    data = byo_dataset(train_path, data_dir=data_dir, dataset=dataset, items=items, users=users,
                       config=config)  # fmt: skip
    train, test = data.events, read_events(Path(test_path))
    bundle = train_bundle(train, data, artifacts_dir, "byo", data_dir=data_dir, tiny=tiny)
    ours = OurModel.load(bundle, test)
    users_ = sorted(test["user_id"].astype(str).unique())
    top = ours.two_stage(users_, K)
    out_dir = Path(out_dir)
    write_topk(top, out_dir / "topk.tsv")
    lists = {"ours": top, **reference_lists(
        {"popularity": R.Popularity(), "item_knn": R.ItemKNN(200)}, train, data.items, users_
    )}  # fmt: skip
    scores = {n: S.score_topk(rec, S.relevant_items(train, test), train, data.items)
              for n, rec in lists.items()}  # fmt: skip
    if data.has_ratings:
        preds = ours.predict(test[["user_id", "item_id", "rating"]])
        write_predictions(preds, out_dir / "predictions.tsv")
        rated = preds["rating"].notna().to_numpy()
        if rated.any():
            scores["ours"].update(
                S.score_ratings(
                    preds["rating"].to_numpy()[rated], preds["prediction"].to_numpy()[rated]
                )
            )
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    return scores


def score_files(
    split_dir: Path,
    topk_path: Path | None,
    predictions_path: Path | None,
    items: InteractionData | None = None,
) -> dict[str, Any]:
    """Score another system's TSV answers against <split_dir>/{train,test}.tsv; `items`: the
    dataset whose item table the coverage and tag metrics use (None: ids only)."""
    train = read_events(Path(split_dir) / "train.tsv")
    test = read_events(Path(split_dir) / "test.tsv")
    if items is not None and len(items.items):
        table = items.items
    else:  # ids only: the catalog is every item the split names
        ids = sorted(set(train["item_id"].astype(str)) | set(test["item_id"].astype(str)))
        table = pd.DataFrame({"item_id": ids, "tags": [[] for _ in ids]})
    out: dict[str, Any] = {}
    if topk_path is not None:
        out.update(S.score_topk(read_topk(topk_path), S.relevant_items(train, test), train, table))
    if predictions_path is not None:
        pred = read_predictions(predictions_path)
        merged = test.merge(pred, on=["user_id", "item_id"], how="left")
        out.update(S.score_ratings(merged["rating"].to_numpy(), merged["prediction"].to_numpy()))
    return out
