"""The data contract (docs/data.md): what a valid dataset folder reads as, and how each kind of
bad data is refused (file, line or row, column, reason)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.contract import DataError, DatasetConfig
from training.data.dataset import load_dataset

pytestmark = pytest.mark.timeout(60)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def problems(folder: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    return str(info.value)


EVENTS = """\
    user_id,item_id,timestamp,rating
    u1,i1,1700000000,5
    u1,i2,1700000100,3
    u2,i1,2024-05-01T12:30:00Z,4
    """
ITEMS = """\
    item_id,title,tags,price
    i1,Oat milk,Dairy|Vegan,2.5
    i2,Rye bread,Bakery,3
    """


def test_minimal_folder_needs_no_configuration(tmp_path: Path) -> None:
    plain = ITEMS.replace(",price", "").replace(",2.5", "").replace(",3\n", "\n")
    data = load_dataset(write(tmp_path / "d", {"events.csv": EVENTS, "items.csv": plain}))
    assert data.n_events == 3 and data.has_ratings and not data.has_money
    assert data.config.name == "d" and data.config.ratings.like_threshold == 4.0


def test_prices_come_with_their_currency(tmp_path: Path) -> None:
    files = {"events.csv": EVENTS, "items.csv": ITEMS}
    assert "has a price column but dataset.toml declares no currency" in problems(
        write(tmp_path / "nocur", files)
    )
    files["dataset.toml"] = '[money]\ncurrency = "EUR"\n'
    data = load_dataset(write(tmp_path / "d", files))
    assert not data.has_money and data.config.currency == "EUR"  # prices only: no money events
    assert data.events["timestamp"].tolist() == [1700000000, 1700000100, 1714566600]
    assert data.items.set_index("item_id").loc["i1", "tags"] == ["Dairy", "Vegan"]
    assert data.items["price"].tolist() == [2.5, 3.0]


def test_parquet_and_renamed_columns(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    pd.DataFrame(
        {"customer": ["a", "b"], "sku": ["x", "y"], "ts": [1_700_000_000, 1_700_000_500]}
    ).to_parquet(folder / "events.parquet")
    write(folder, {"dataset.toml": """\
        [columns.events]
        user_id = "customer"
        item_id = "sku"
        timestamp = "ts"
        """})  # fmt: skip
    data = load_dataset(folder)
    assert data.events["user_id"].tolist() == ["a", "b"]
    assert data.events["item_id"].tolist() == ["x", "y"]


def test_several_tag_columns_are_prefixed_by_their_field(tmp_path: Path) -> None:
    folder = write(tmp_path / "t", {
        "events.csv": "user_id,item_id,timestamp\nu,i1,1\n",
        "items.csv": "item_id,tags,brand\ni1,Dairy,Oatly\n",
        "dataset.toml": '[items]\ntag_columns = ["tags", "brand"]\n',
    })  # fmt: skip
    assert load_dataset(folder).items["tags"].tolist() == [["Dairy", "brand:Oatly"]]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"items.csv": ITEMS}, "no events.csv or events.parquet"),
        ({"events.csv": ""}, "events.csv: empty file"),
        ({"events.csv": "user_id,item_id,timestamp\n"}, "events.csv: no rows"),
        ({"events.csv": "user,item_id,timestamp\nu,i,1\n"}, "missing column(s) user_id"),
        (
            {"events.csv": EVENTS, "items.csv": ITEMS + "    i1,Again,,1\n"},
            "items.csv, line 4, column item_id: duplicate id ('i1')",
        ),
        (
            {"events.csv": EVENTS + "    u3,i9,1700000200,4\n", "items.csv": ITEMS},
            "events.csv, line 5, column item_id: item not in the items file ('i9')",
        ),
        (
            {"events.csv": EVENTS + "    u3,i1,yesterday,4\n"},
            "events.csv, line 5, column timestamp: not a timestamp",
        ),
        (
            {"events.csv": "user_id,item_id,timestamp\nu,i,1700000000000\n"},
            "events.csv, line 2, column timestamp: looks like milliseconds",
        ),
        (
            {"events.csv": EVENTS + "    u3,i1,1700000200,7\n"},
            "events.csv, line 5, column rating: outside the declared scale 1..5 ('7')",
        ),
        (
            {"events.csv": EVENTS, "items.csv": ITEMS + "    i3,Gift card,,-5\n"},
            "items.csv, line 4, column price: negative price ('-5')",
        ),
        (
            {"events.csv": EVENTS, "items.csv": ITEMS + "    i3,Gift card,,free\n"},
            "items.csv, line 4, column price: not a number ('free')",
        ),
        (
            {"events.csv": "user_id,item_id,timestamp\n,i,1\n"},
            "events.csv, line 2, column user_id: empty id",
        ),
        (
            {"events.csv": "user_id,item_id,timestamp,value\nu,i,1,9.99\n"},
            "declares no currency",
        ),
        (
            {
                "events.csv": "user_id,item_id,timestamp,event_type\nu,i,1,view\nu,i,2,buy\n",
                "dataset.toml": "[event_weights]\nview = 1\npurchase = 4\n",
            },
            "events.csv, line 3, column event_type: no weight declared for this type",
        ),
        (
            {"events.csv": EVENTS, "dataset.toml": "[ratings]\nmin = 1\nmax = 10\nposotive = 8\n"},
            "unknown key 'ratings.posotive' (did you mean 'positive'?)",
        ),
        (
            {
                "events.csv": EVENTS,
                "dataset.toml": "[users]\nnumeric = ['age']\n",
                "users.csv": "user_id\nu1\n",
            },
            "users.csv: missing column(s) age",
        ),
    ],
)
def test_bad_data_is_refused_with_file_line_column_and_reason(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    assert expected in problems(write(tmp_path / "bad", files))


def test_bad_encoding_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "events.csv").write_bytes(b"user_id,item_id,timestamp\nu1,i1,1\nu2,Cr\xe8me,2\n")
    message = problems(folder)
    assert "events.csv, line 3: not valid utf-8 text" in message
    (folder / "dataset.toml").write_text('encoding = "latin-1"\n')
    assert load_dataset(folder).events["item_id"].tolist() == ["i1", "Crème"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    folder = write(tmp_path / "many", {
        "events.csv": EVENTS + "    u3,i1,never,9\n",
        "items.csv": ITEMS + "    i2,Dup,,-1\n",
    })  # fmt: skip
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    found = "\n".join(info.value.problems)
    for part in ("duplicate id", "negative price", "not a timestamp", "outside the declared"):
        assert part in found


def test_config_defaults_and_strictness() -> None:
    config = DatasetConfig()
    assert config.tag_columns == ("tags",) and not config.repeat and config.currency is None
    with pytest.raises(DataError, match=r"ratings.min .* must be below ratings.max"):
        DatasetConfig.from_mapping({"ratings": {"min": 5, "max": 1}})
    with pytest.raises(DataError, match="both categorical and numeric"):
        DatasetConfig.from_mapping({"users": {"categorical": ["age"], "numeric": ["age"]}})
    with pytest.raises(DataError, match=r"behaviour.repeat must be true or false"):
        DatasetConfig.from_mapping({"behaviour": {"repeat": "yes"}})


def test_builtin_datasets_read_through_the_contract(data_dir: Path) -> None:
    movielens = load_dataset(data_dir / "datasets" / "movielens")
    assert (movielens.n_events, len(movielens.items), len(movielens.users)) == (100_000, 1682, 943)
    assert movielens.has_ratings and not movielens.config.repeat
    instacart = load_dataset(data_dir / "datasets" / "instacart")
    assert instacart.n_events == 150_000
    assert instacart.events["user_id"].nunique() == 593
    assert instacart.events["item_id"].nunique() == 14_190
    assert instacart.config.repeat and not instacart.has_ratings and not instacart.has_money
    pairs = instacart.events[["user_id", "item_id"]].drop_duplicates()
    assert 0.6 < 1 - len(pairs) / instacart.n_events < 0.7  # ~64% of lines are reorders
    cdnow = load_dataset(data_dir / "datasets" / "cdnow")
    assert cdnow.has_money and cdnow.config.currency == "USD"
    assert np.isclose(cdnow.events["value"].sum(), 2_500_315.5, rtol=1e-6)


def test_instacart_timeline_follows_the_order_sequence(data_dir: Path) -> None:
    """Orders are days_since_prior_order apart (plus the change of hour), at their
    order_hour_of_day, and each user's first order falls on its order_dow (0 = Sunday)."""
    raw = pd.read_csv(data_dir / "instacart" / "df_sample.csv")
    events = pd.read_csv(data_dir / "datasets" / "instacart" / "events.csv")
    times = events.groupby("order_id")["timestamp"].min().rename("t").reset_index()
    columns = ["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day",
               "days_since_prior_order"]  # fmt: skip
    meta = raw.drop_duplicates("order_id")[columns].merge(times, on="order_id")
    meta = meta.sort_values(["user_id", "order_number"]).reset_index(drop=True)
    when = pd.to_datetime(meta["t"], unit="s")
    assert (when.dt.hour == meta["order_hour_of_day"]).all()
    later = meta["order_number"] > meta.groupby("user_id")["order_number"].transform("min")
    gap_days = meta.groupby("user_id")["t"].diff()[later] / 86_400
    hour_change = meta.groupby("user_id")["order_hour_of_day"].diff()[later] / 24
    assert np.allclose(gap_days, meta["days_since_prior_order"][later] + hour_change)
    first = ~later
    assert (when[first].dt.day_of_week == (meta["order_dow"][first] + 6) % 7).all()
