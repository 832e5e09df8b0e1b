"""The built-in datasets, written in the data contract's format (docs/data.md).

    paths = write_builtin(Path("data"))   # data/datasets/{movielens,cdnow,instacart}/

Each one is a small converter from the verified raw files (training.data.fetch) to a dataset
folder: events.csv, items.csv and users.csv where the source has them, and a dataset.toml.
After that, nothing downstream knows which dataset it is reading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.cdnow import DATASET_TOML as CDNOW_TOML
from training.data.cdnow import load_cdnow
from training.data.contract import CONFIG_FILE
from training.data.digest import sha256_path
from training.data.movielens import DATASET_TOML as MOVIELENS_TOML
from training.data.movielens import load_movielens
from training.data.schema import InteractionData

DATASETS_DIR = "datasets"

INSTACART_TOML = """\
name = "instacart"
description = "Instacart orders sample: 593 shoppers' grocery orders, one event per order line"

[event_weights]
purchase = 1.0

[behaviour]
repeat = true  # groceries: "buy again" is most of what people buy
value_horizon_days = 28
"""
# The sample has no absolute time. Each user's first order is placed on the first date on or
# after INSTACART_EPOCH with its order_dow (0 = Sunday), later orders days_since_prior_order
# after the previous one (Instacart caps that at 30), at order_hour_of_day.
INSTACART_EPOCH = pd.Timestamp("2017-01-01", tz="UTC")  # a Sunday, the year the data was released


def write_dataset(data: InteractionData, folder: Path, toml: str) -> Path:
    """Write `data` as a contract folder: only the columns and files the data has."""
    events = data.events
    columns = ["user_id", "item_id", "timestamp"]
    columns += [c for c, has in (
        ("event_type", events["event_type"].ne("").any()),
        ("rating", data.has_ratings),
        ("value", data.has_money),
        ("quantity", events["quantity"].notna().any()),
    ) if has]  # fmt: skip
    frames = {"events.csv": events[columns]}
    if len(data.items):
        items = data.items.copy()
        if "tags" in items:
            items["tags"] = ["|".join(t) for t in items["tags"]]
        frames["items.csv"] = items
    if len(data.users):
        frames["users.csv"] = data.users
    return write_folder(folder, frames, toml)


def write_folder(folder: Path, frames: dict[str, pd.DataFrame], toml: str) -> Path:
    """The files + dataset.toml, staged in a temp dir and renamed into place: a reader never
    sees half a dataset."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, frame in frames.items():
            _integral_as_int(frame).to_csv(staging / name, index=False)
        (staging / CONFIG_FILE).write_text(toml)
        os.chmod(staging, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def movielens_dataset(raw: Path, out: Path) -> Path:
    data = load_movielens(raw)
    return write_dataset(data, out, MOVIELENS_TOML)


def cdnow_dataset(raw: Path, out: Path) -> Path:
    return write_dataset(load_cdnow(raw), out, CDNOW_TOML)


def instacart_events(raw_csv: Path) -> pd.DataFrame:
    """Instacart order lines -> events (user_id, item_id, timestamp, event_type, order_id)."""
    lines = pd.read_csv(
        raw_csv,
        usecols=["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day",
                 "days_since_prior_order", "product_id", "add_to_cart_order"],
    )  # fmt: skip
    orders = (
        lines.drop_duplicates("order_id")
        .sort_values(["user_id", "order_number"])
        .reset_index(drop=True)
    )
    gap = orders["days_since_prior_order"].fillna(0.0).to_numpy(np.float64)
    first = (
        orders["order_number"].to_numpy()
        == orders.groupby("user_id")["order_number"].transform("min").to_numpy()
    )
    # Day of each user's first order: the first date >= the epoch with that weekday.
    first_day = np.where(first, (orders["order_dow"].to_numpy() - INSTACART_EPOCH.dayofweek - 1)
                         % 7, 0)  # fmt: skip
    gap = np.where(first, first_day, gap)
    day = pd.Series(gap).groupby(orders["user_id"].to_numpy()).cumsum().to_numpy()
    seconds = (day * 86_400 + orders["order_hour_of_day"].to_numpy() * 3_600).astype(np.int64)
    orders["timestamp"] = int(INSTACART_EPOCH.timestamp()) + seconds
    merged = lines.merge(orders[["order_id", "timestamp"]], on="order_id")
    # Lines of one order share its time; add_to_cart_order keeps their order (1 s apart).
    merged["timestamp"] += merged["add_to_cart_order"].fillna(1).astype(np.int64) - 1
    return pd.DataFrame({
        "user_id": merged["user_id"].astype(str),
        "item_id": merged["product_id"].astype(str),
        "timestamp": merged["timestamp"].astype(np.int64),
        "event_type": "purchase",
        "order_id": merged["order_id"].astype(str),
    }).sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)  # fmt: skip


def instacart_dataset(raw: Path, out: Path) -> Path:
    events = instacart_events(Path(raw) / "df_sample.csv")
    return write_folder(out, {"events.csv": events}, INSTACART_TOML)


def _integral_as_int(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding whole numbers (ages, years, star ratings) written as 24, not 24.0;
    missing values stay empty cells."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype.kind == "f" and np.all(np.mod(column.dropna(), 1) == 0):
            out[name] = column.astype("Int64")
    return out


# raw folder name under data/ -> (dataset name, converter)
BUILTIN: dict[str, tuple[str, Callable[[Path, Path], Path]]] = {
    "ml-100k": ("movielens", movielens_dataset),
    "cdnow": ("cdnow", cdnow_dataset),
    "instacart": ("instacart", instacart_dataset),
}


# Bump when a converter's output changes: folders written by an older one are rewritten.
FORMAT_VERSION = "1"
MARKER = ".written-from"


def write_builtin(data_dir: Path, raw: dict[str, Path], force: bool = False) -> dict[str, Path]:
    """Every fetched raw data set -> data_dir/datasets/<name>/ in the contract format; a folder
    already written from the same raw files by the same converter version is kept."""
    out = {}
    for raw_name, path in raw.items():
        name, convert = BUILTIN[raw_name]
        target = Path(data_dir) / DATASETS_DIR / name
        digests = sorted(f"{p.name}:{sha256_path(p)}" for p in Path(path).iterdir() if p.is_file())
        stamp = "\n".join([f"format {FORMAT_VERSION}", *digests]) + "\n"
        marker = target / MARKER
        if force or not marker.is_file() or marker.read_text() != stamp:
            convert(path, target)
            marker.write_text(stamp)
        out[name] = target
    return out


def resolve(data_dir: Path, name_or_path: str | Path) -> Path:
    """`instacart` -> data/datasets/instacart; any existing folder path as it is."""
    path = Path(name_or_path)
    if path.is_dir() or os.sep in str(name_or_path):
        return path
    return Path(data_dir) / DATASETS_DIR / str(name_or_path)
