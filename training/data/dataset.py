"""A dataset folder (docs/data.md) -> validated InteractionData in the canonical schema.

    data = load_dataset(Path("data/instacart"))   # raises DataError listing every problem

Checks (each problem names file, line or row, column and reason): required files and columns,
empty files, bad encodings, empty or duplicate ids, events on unknown items, unparseable
timestamps, ratings outside the declared scale, non-numeric or negative prices, quantities
and money, unknown event types when weights are declared, and missing declared attributes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from services.contract.bundle import sha256_file
from training.data.contract import CONFIG_FILE, REQUIRED, AttributeSpec, DataError, DatasetConfig
from training.data.schema import InteractionData, make_events
from training.data.tables import Table, booleans, find_file, numbers, read_table, timestamps

MAX_PROBLEMS = 50


def load_dataset(folder: Path) -> InteractionData:
    """Read, validate and convert a dataset folder. Raises DataError with all problems found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError([f"{folder}: not a directory (a dataset is a folder; see docs/data.md)"])
    config = DatasetConfig.load(folder)
    paths = {t: find_file(folder, t, config.files.get(t)) for t in ("events", "items", "users")}
    if paths["events"] is None:
        raise DataError([f"{folder}: no events.csv or events.parquet (the one required file)"])
    problems: list[str] = []
    tables: dict[str, Table] = {}
    for name, path in paths.items():
        if path is None:
            continue
        try:
            tables[name] = _renamed(read_table(path, config.encoding), name, config)
        except DataError as exc:
            problems += exc.problems
    if problems:
        raise DataError(problems)
    items = _items(tables.get("items"), config, problems)
    users = _users(tables.get("users"), config, problems)
    events = _events(tables["events"], config, items, problems)
    if problems:
        raise DataError(problems[:MAX_PROBLEMS] + _more(problems))
    digest = hashlib.sha256()
    for path in [*(p for p in paths.values() if p is not None), folder / CONFIG_FILE]:
        if path.is_file():
            digest.update(sha256_file(path).encode())
    name = config.name or folder.name
    money = "value" in tables["events"].frame
    return InteractionData(events, items, users, name, digest.hexdigest(), config, money)


def _more(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return []
    return [f"... and {len(problems) - MAX_PROBLEMS} more problem(s)"]


def _renamed(table: Table, name: str, config: DatasetConfig) -> Table:
    """Contract column names (after [columns.<table>]); missing required columns refused."""
    mapping = config.columns.get(name, {})
    reverse = {theirs: ours for ours, theirs in mapping.items()}
    frame = table.frame.rename(columns=reverse)
    missing = [c for c in REQUIRED[name] if c not in frame]
    declared = []
    if name == "items":
        declared = [*config.items.names, *(c for c in config.tag_columns if c != "tags")]
    elif name == "users":
        declared = list(config.users.names)
    missing += [c for c in declared if c not in frame]
    if missing:
        have = ", ".join(table.frame.columns)
        raise DataError([f"{table.name}: missing column(s) {', '.join(missing)} (has: {have})"])
    return Table(table.name, frame, table.is_csv)


def _ids(table: Table, column: str, problems: list[str], unique: bool) -> pd.Series:
    ids = table.frame[column]
    empty = (ids == "").to_numpy()
    problems += table.problems(empty, column, "empty id")
    if unique:
        problems += table.problems(ids.duplicated().to_numpy() & ~empty, column, "duplicate id")
    return ids


def _items(table: Table | None, config: DatasetConfig, problems: list[str]) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({"item_id": pd.Series([], dtype=object), "title": [], "tags": []})
    f = table.frame
    out = pd.DataFrame({"item_id": _ids(table, "item_id", problems, unique=True)})
    for text in ("title", "description"):
        if text in f:
            out[text] = f[text]
    out["tags"] = _tags(f, config)
    if "price" in f:
        out["price"] = _money(table, "price", "negative price", config, problems)
    if "available" in f:
        available, bad = booleans(table, "available")
        problems += bad
        out["available"] = available
    return _attributes(table, config.items, out, problems)


def _tags(frame: pd.DataFrame, config: DatasetConfig) -> list[list[str]]:
    """Multi-valued tag columns -> one tag list per item. The column named `tags` gives plain
    tags; any other tag column (e.g. brand) gives "column:value" so fields never collide."""
    columns = [c for c in config.tag_columns if c in frame]
    out: list[list[str]] = [[] for _ in range(len(frame))]
    for column in columns:
        prefix = "" if column == "tags" else f"{column}:"
        for row, cell in enumerate(frame[column].to_numpy(dtype=object)):
            if cell:
                parts = (p.strip() for p in str(cell).split(config.tag_separator))
                out[row].extend(prefix + p for p in parts if p)
    return [list(dict.fromkeys(t)) for t in out]


def _users(table: Table | None, config: DatasetConfig, problems: list[str]) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({"user_id": pd.Series([], dtype=object)})
    out = pd.DataFrame({"user_id": _ids(table, "user_id", problems, unique=True)})
    return _attributes(table, config.users, out, problems)


def _attributes(
    table: Table, declared: AttributeSpec, out: pd.DataFrame, problems: list[str]
) -> pd.DataFrame:
    """The side table's declared attributes into `out`: categorical as text, numeric parsed."""
    for name in declared.categorical:
        out[name] = table.frame[name]
    for name in declared.numeric:
        values, bad = numbers(table, name)
        problems += bad
        out[name] = values
    return out


def _events(
    table: Table, config: DatasetConfig, items: pd.DataFrame, problems: list[str]
) -> pd.DataFrame:
    f = table.frame
    users = _ids(table, "user_id", problems, unique=False)
    item_ids = _ids(table, "item_id", problems, unique=False)
    if len(items):
        unknown = ~item_ids.isin(items["item_id"]).to_numpy() & (item_ids != "").to_numpy()
        problems += table.problems(unknown, "item_id", "item not in the items file")
    stamps, bad = timestamps(table, "timestamp")
    problems += bad
    rating = None
    if "rating" in f:
        rating, bad = numbers(table, "rating")
        scale = config.ratings
        outside = (rating < scale.low) | (rating > scale.high)
        problems += bad + table.problems(
            outside, "rating", f"outside the declared scale {scale.low:g}..{scale.high:g}"
        )
    value = None
    if "value" in f:
        value = np.nan_to_num(_money(table, "value", "negative money", config, problems), nan=0.0)
    quantity = None
    if "quantity" in f:
        quantity, bad = numbers(table, "quantity")
        problems += bad + table.problems(quantity < 0, "quantity", "negative quantity")
    event_type = f.get("event_type")
    weight = _weights(table, event_type, config, problems)
    order_id = f["order_id"].to_numpy(dtype=object) if "order_id" in f else None
    return make_events(
        users, item_ids, stamps, rating=rating, value=value,
        event_type=event_type, quantity=quantity, weight=weight, order_id=order_id,
    )  # fmt: skip


def _money(
    table: Table, column: str, negative: str, config: DatasetConfig, problems: list[str]
) -> np.ndarray:
    """A money column: numbers >= 0, and a declared currency (never money of unknown kind)."""
    amounts, bad = numbers(table, column)
    problems += bad + table.problems(amounts < 0, column, negative)
    if config.currency is None:
        problems.append(
            f"{table.name}: has a {column} column but dataset.toml declares no currency; add "
            '[money] currency = "USD" (or your currency)'
        )
    return amounts


def _weights(
    table: Table, event_type: pd.Series | None, config: DatasetConfig, problems: list[str]
) -> np.ndarray | None:
    """Implicit-feedback weight per event from [event_weights]; 1.0 where nothing is declared."""
    if event_type is None or not config.event_weights:
        return None
    known = event_type.isin(list(config.event_weights)).to_numpy()
    declared = ", ".join(sorted(config.event_weights))
    problems += table.problems(
        ~known, "event_type", f"no weight declared for this type (declared: {declared})"
    )
    return event_type.map(config.event_weights).fillna(1.0).to_numpy(np.float32)
