"""A seeded synthetic shop in the data contract's format (docs/data.md), for scale tests.

    python -m bench.synthetic_shop --out /tmp/shop-1m --items 1000000 --users 1000000 \\
        --events 20000000

Items have a category (the tag column), a brand (declared categorical attribute), a weight
(declared numeric attribute), a price, availability and a title + description built from
their category; users have a region and an age. Each user shops mostly (85%) in one home
category, picking items by a Zipf-like popularity inside it; events are views, carts and
purchases, purchases carrying money (price x quantity, EUR). The event log is written in
chunks of users with a Parquet writer, so memory stays bounded whatever --events is. Same
arguments -> the same files, bit for bit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SECONDS_PER_DAY = 86_400
LOG_START = 1_700_000_000  # 2023-11-14 UTC
CATEGORIES = (
    "Bakery", "Beverages", "Dairy", "Frozen", "Household", "Meat", "Pantry", "Produce",
    "Snacks", "Personal care", "Baby", "Pets",
)  # fmt: skip
ADJECTIVES = ("Organic", "Fresh", "Classic", "Family size", "Light", "Premium", "Value")
REGIONS = ("north", "south", "east", "west", "central")
EVENT_TYPES = ("view", "cart", "purchase")
EVENT_SHARES = (0.75, 0.15, 0.10)
HOME_SHARE = 0.85
DATASET_TOML = """\
name = "synthetic-shop"
description = "seeded synthetic shop (bench.synthetic_shop) for scale tests"

[event_weights]
view = 1
cart = 2
purchase = 4

[money]
currency = "EUR"

[behaviour]
repeat = true
value_horizon_days = 28

[items]
tag_columns = ["category"]
categorical = ["brand"]
numeric = ["weight_g"]

[users]
categorical = ["region"]
numeric = ["age"]
"""


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    text = pa.array(numbers, type=pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def write_items(folder: Path, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """items.parquet; -> each item's category (int64[n_items])."""
    category = rng.integers(0, len(CATEGORIES), n_items)
    adjective = rng.integers(0, len(ADJECTIVES), n_items)
    numbers = np.arange(1, n_items + 1)
    cat_names = np.asarray(CATEGORIES, dtype=object)[category]
    titles = pc.binary_join_element_wise(
        pa.array(np.asarray(ADJECTIVES, dtype=object)[adjective].tolist()),
        pa.array(cat_names.tolist()),
        _ids("item ", numbers),
        " ",
    )
    price = np.round(rng.lognormal(1.3, 0.7, n_items), 2)
    table = pa.table({
        "item_id": _ids("p", numbers),
        "title": titles,
        "description": pc.binary_join_element_wise(
            pa.scalar("A"), pa.array([c.lower() for c in cat_names.tolist()]),
            pa.scalar("product from our range"), " "),
        "category": pa.array(cat_names.tolist()),
        "brand": _ids("brand", rng.integers(1, 2_000, n_items)),
        "weight_g": rng.integers(50, 5_000, n_items),
        "price": price,
        "available": rng.random(n_items) > 0.03,
    })  # fmt: skip
    pq.write_table(table, folder / "items.parquet")
    return category


def write_users(folder: Path, n_users: int, rng: np.random.Generator) -> None:
    region = np.asarray(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), n_users)]
    table = pa.table(
        {
            "user_id": _ids("c", np.arange(1, n_users + 1)),
            "region": pa.array(region.tolist()),
            "age": rng.integers(18, 80, n_users),
        }
    )
    pq.write_table(table, folder / "users.parquet")


def write_events(
    folder: Path,
    category: np.ndarray,
    n_users: int,
    n_events: int,
    rng: np.random.Generator,
    days: int,
    chunk_users: int = 100_000,
) -> int:
    """events.parquet, written chunk by chunk of users; -> rows written."""
    order = np.argsort(category, kind="stable")  # items grouped by category
    sizes = np.bincount(category, minlength=len(CATEGORIES))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    prices = pq.read_table(folder / "items.parquet", columns=["price"]).column(0).to_numpy()
    activity = 1 + rng.pareto(1.3, n_users)
    counts = np.maximum(1, np.round(activity * n_events / activity.sum())).astype(np.int64)
    home = rng.integers(0, len(CATEGORIES), n_users)
    writer = None
    written = 0
    try:
        for lo in range(0, n_users, chunk_users):
            hi = min(lo + chunk_users, n_users)
            owner = np.repeat(np.arange(lo, hi), counts[lo:hi])
            cat = home[owner]
            away = rng.random(owner.size) >= HOME_SHARE
            cat[away] = rng.integers(0, len(CATEGORIES), int(away.sum()))
            # Zipf-like pick inside the category: low positions are the popular items.
            pos = np.minimum((rng.pareto(0.9, owner.size) * 20).astype(np.int64), sizes[cat] - 1)
            item = order[starts[cat] + pos]
            kind = rng.choice(len(EVENT_TYPES), owner.size, p=EVENT_SHARES)
            quantity = np.where(kind == 2, rng.integers(1, 4, owner.size), 0)
            value = np.where(kind == 2, np.round(prices[item] * quantity, 2), 0.0)
            chunk = pa.table({
                "user_id": _ids("c", owner + 1),
                "item_id": _ids("p", item + 1),
                "timestamp": LOG_START + rng.integers(0, days * SECONDS_PER_DAY, owner.size),
                "event_type": pa.array(np.asarray(EVENT_TYPES, dtype=object)[kind].tolist()),
                "value": value,
                "quantity": quantity.astype(np.float64),
            })  # fmt: skip
            if writer is None:
                writer = pq.ParquetWriter(folder / "events.parquet", chunk.schema)
            writer.write_table(chunk)
            written += chunk.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


def write_shop(
    folder: Path, n_items: int, n_users: int, n_events: int, seed: int = 0, days: int = 180
) -> int:
    """The whole dataset folder; -> events written (about n_events: per-user counts round)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    category = write_items(folder, n_items, rng)
    write_users(folder, n_users, rng)
    written = write_events(folder, category, n_users, n_events, rng, days)
    (folder / "dataset.toml").write_text(DATASET_TOML)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synthetic_shop", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--items", type=int, default=1_000_000, help="default: %(default)s")
    parser.add_argument("--users", type=int, default=1_000_000, help="default: %(default)s")
    parser.add_argument("--events", type=int, default=20_000_000, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n = write_shop(args.out, args.items, args.users, args.events, args.seed)
    print(f"{args.out}: {args.items:,} items, {args.users:,} users, {n:,} events "
          f"({time.perf_counter() - start:.1f}s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
