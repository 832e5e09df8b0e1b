"""MovieLens-100K loader: RecBole atomic files (ml-100k.inter/.item/.user) or the original
GroupLens layout (u.data, u.item, u.user), both into the canonical schema."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.contract import DatasetConfig
from training.data.schema import InteractionData, make_events

# MovieLens-100K's declaration in the data contract (written as dataset.toml by the fetcher).
# The bucket edges are the classic MovieLens age groups and release-year eras.
DATASET_TOML = """\
name = "movielens-100k"
description = "GroupLens MovieLens-100K: 943 users rate 1,682 films on 1..5 stars"

[ratings]
min = 1
max = 5
positive = 4

[behaviour]
repeat = false  # a film once rated is not recommended again
value_horizon_days = 91

[items]
tag_columns = ["tags"]
numeric = ["year"]

[items.boundaries]
year = [1940, 1960, 1970, 1980, 1985, 1990, 1993, 1995, 1997]

[users]
categorical = ["gender", "occupation"]
numeric = ["age"]

[users.boundaries]
age = [18, 25, 35, 45, 50, 56]
"""
CONFIG = DatasetConfig.from_mapping(tomllib.loads(DATASET_TOML), "movielens dataset.toml")

# Genre flag order of GroupLens u.item (u.genre), spelled as RecBole spells the tokens.
GROUPLENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


def _load_recbole(root: Path) -> InteractionData:
    files = [root / f"ml-100k.{ext}" for ext in ("inter", "item", "user")]
    inter = pd.read_csv(files[0], sep="\t", dtype=str)
    item = pd.read_csv(files[1], sep="\t", dtype=str, keep_default_na=False)
    user = pd.read_csv(files[2], sep="\t", dtype=str, keep_default_na=False)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    item.columns = [c.split(":")[0] for c in item.columns]
    user.columns = [c.split(":")[0] for c in user.columns]
    events = make_events(
        inter["user_id"],
        inter["item_id"],
        inter["timestamp"].astype(float).astype(np.int64),
        rating=inter["rating"].astype(np.float32),
    )
    items = pd.DataFrame(
        {
            "item_id": item["item_id"],
            "title": item["movie_title"],
            "tags": [t.split() if t else [] for t in item["class"]],
            "year": pd.to_numeric(item["release_year"], errors="coerce").to_numpy(np.float64),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": user["user_id"],
            "age": pd.to_numeric(user["age"], errors="coerce").to_numpy(np.float64),
            "gender": user["gender"],
            "occupation": user["occupation"],
        }
    )
    return InteractionData(events, items, users, "movielens-100k/recbole", _digest(files), CONFIG)


_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _load_grouplens(root: Path) -> InteractionData:
    files = [root / "u.data", root / "u.item", root / "u.user"]
    data = pd.read_csv(files[0], sep="\t", header=None, names=["u", "i", "r", "t"], dtype=str)
    events = make_events(
        data["u"], data["i"], data["t"].astype(np.int64), rating=data["r"].astype(np.float32)
    )
    raw = pd.read_csv(
        files[1], sep="|", header=None, dtype=str, encoding="latin-1", keep_default_na=False
    )
    flags = raw.iloc[:, 5:24].astype(int).to_numpy()
    titles, years = [], []
    for title, date in zip(raw[1], raw[2], strict=True):
        m = _YEAR.search(title)
        year = (
            int(m.group(1))
            if m
            else (int(date[-4:]) if len(date) >= 4 and date[-4:].isdigit() else 0)
        )
        titles.append(_YEAR.sub("", title).strip())
        years.append(year)
    items = pd.DataFrame(
        {
            "item_id": raw[0],
            "title": titles,
            "tags": [[g for g, f in zip(GROUPLENS_GENRES, row, strict=True) if f] for row in flags],
            "year": np.where(np.asarray(years) > 0, years, np.nan).astype(np.float64),
        }
    )
    u = pd.read_csv(files[2], sep="|", header=None, dtype=str, keep_default_na=False)
    users = pd.DataFrame(
        {"user_id": u[0], "age": u[1].astype(np.float64), "gender": u[2], "occupation": u[3]}
    )
    return InteractionData(events, items, users, "movielens-100k/grouplens", _digest(files), CONFIG)


def load_movielens(root: Path) -> InteractionData:
    """Load MovieLens-100K from a directory in either layout."""
    root = Path(root)
    if (root / "ml-100k.inter").is_file():
        return _load_recbole(root)
    if (root / "u.data").is_file():
        return _load_grouplens(root)
    raise FileNotFoundError(
        f"{root}: no MovieLens-100K files (expected ml-100k.inter/.item/.user or "
        "u.data/u.item/u.user); run `make data`"
    )
