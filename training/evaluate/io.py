"""TSV files shared with other systems. No header, tab-separated, one row per line:

    events       user  item  rating  timestamp      (splits; what Surprise, RecBole, implicit read)
    top-k lists  user  item  rank                   (rank 1 = best)
    predictions  user  item  prediction             (predicted rating)

Readers also accept a first line that is a header (it is recognised by its column names).
Ids are read as strings; events come back in the canonical schema (training.data.schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.schema import make_events

EVENT_COLUMNS = ("user", "item", "rating", "timestamp")
TOPK_COLUMNS = ("user", "item", "rank")
PREDICTION_COLUMNS = ("user", "item", "prediction")


def _read(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] < len(columns):
        raise ValueError(f"{path}: expected {len(columns)} columns ({' '.join(columns)})")
    frame = frame.iloc[:, : len(columns)]
    frame.columns = list(columns)
    if len(frame) and frame.iloc[0, 0].strip().lower() in {"user", "user_id", "userid"}:
        frame = frame.iloc[1:].reset_index(drop=True)
    return frame


def write_events(events: pd.DataFrame, path: Path) -> Path:
    """events in the canonical schema (user_id, item_id, timestamp, rating) -> TSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = pd.DataFrame(
        {
            "user": events["user_id"].astype(str),
            "item": events["item_id"].astype(str),
            "rating": events["rating"].astype(np.float64).map(lambda r: f"{r:g}"),
            "timestamp": events["timestamp"].astype(np.int64),
        }
    )
    out.to_csv(path, sep="\t", header=False, index=False)
    return path


def read_events(path: Path) -> pd.DataFrame:
    """TSV user item rating timestamp -> canonical events, sorted by (timestamp, user_id)."""
    raw = _read(Path(path), EVENT_COLUMNS)
    return make_events(
        raw["user"],
        raw["item"],
        raw["timestamp"].astype(np.float64).astype(np.int64),
        rating=raw["rating"].replace("", "nan").astype(np.float32),
    )


def write_topk(recommended: Mapping[str, Sequence[str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as out:
        for user, items in recommended.items():
            for rank, item in enumerate(items, start=1):
                out.write(f"{user}\t{item}\t{rank}\n")
    return path


def read_topk(path: Path) -> dict[str, list[str]]:
    """-> {user: [item, ...]} ordered by rank."""
    raw = _read(Path(path), TOPK_COLUMNS)
    raw["rank"] = raw["rank"].astype(np.int64)
    raw = raw.sort_values(["user", "rank"], kind="stable")
    return {str(u): g["item"].tolist() for u, g in raw.groupby("user", sort=False)}


def write_predictions(predictions: pd.DataFrame, path: Path) -> Path:
    """predictions: columns user_id, item_id, prediction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = predictions[["user_id", "item_id", "prediction"]].copy()
    out["prediction"] = out["prediction"].astype(np.float64).map(lambda p: f"{p:.6f}")
    out.to_csv(path, sep="\t", header=False, index=False)
    return path


def read_predictions(path: Path) -> pd.DataFrame:
    """-> columns user_id, item_id (str), prediction (float64)."""
    raw = _read(Path(path), PREDICTION_COLUMNS)
    return pd.DataFrame(
        {
            "user_id": raw["user"].astype(str),
            "item_id": raw["item"].astype(str),
            "prediction": raw["prediction"].astype(np.float64),
        }
    )
