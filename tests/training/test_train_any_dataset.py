"""`recserve train --data DIR` on a tiny dataset of each shape the contract allows: ratings
only; purchases with money; implicit views and carts with no money and declared attributes;
items without metadata. Each gives a complete bundle whose manifest says what it can do; bad
data gives no bundle and leaves LATEST alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recserve.cli import main as recserve
from services.contract.bundle import Bundle, DatasetFacts

pytestmark = pytest.mark.timeout(300)

N_USERS, N_ITEMS, PER_USER, DAYS = 60, 40, 24, 180
UNAVAILABLE = (0, 1, 2, 10, 11)  # the most bought items of two taste blocks


def events_frame(seed: int) -> pd.DataFrame:
    """Users with a taste for one block of items, over DAYS days (enough for the value model's
    calibration and holdout)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        block = u % 4
        items = (block * 10 + rng.integers(0, 12, PER_USER)) % N_ITEMS
        stamps = np.sort(rng.integers(0, DAYS * 86_400, PER_USER)) + 1_700_000_000
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, stamps, strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def shape(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True)
    ev = events_frame(seed=len(name))
    rng = np.random.default_rng(1)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)]})
    toml = ""
    if name == "ratings":
        ev["rating"] = rng.integers(1, 11, len(ev)) / 2  # a 0.5..5 star scale
        toml = "[ratings]\nmin = 0.5\nmax = 5\npositive = 4\n"
        items = None
    elif name == "money":
        ev["event_type"] = "purchase"
        ev["value"] = np.round(rng.uniform(2, 40, len(ev)), 2)
        ev["quantity"] = rng.integers(1, 4, len(ev))
        items["title"] = [f"Product {i}" for i in range(N_ITEMS)]
        items["tags"] = [f"aisle{i % 5}" for i in range(N_ITEMS)]
        items["price"] = np.round(rng.uniform(2, 20, N_ITEMS), 2)
        items["available"] = [i not in UNAVAILABLE for i in range(N_ITEMS)]
        toml = '[money]\ncurrency = "EUR"\n[behaviour]\nrepeat = true\nvalue_horizon_days = 28\n'
    elif name == "implicit":
        ev["event_type"] = rng.choice(["view", "cart", "purchase"], len(ev), p=[0.7, 0.2, 0.1])
        items["brand"] = [f"b{i % 3}" for i in range(N_ITEMS)]
        items["weight_g"] = rng.integers(100, 2000, N_ITEMS)
        pd.DataFrame({
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "region": [["north", "south"][u % 2] for u in range(N_USERS)],
            "age": rng.integers(18, 70, N_USERS),
        }).to_csv(folder / "users.csv", index=False)  # fmt: skip
        toml = (
            "[event_weights]\nview = 1\ncart = 2\npurchase = 4\n"
            '[items]\ncategorical = ["brand"]\nnumeric = ["weight_g"]\n'
            '[users]\ncategorical = ["region"]\nnumeric = ["age"]\n'
        )
    ev.to_csv(folder / "events.csv", index=False)
    if items is not None:
        items.to_csv(folder / "items.csv", index=False)
    if toml:
        (folder / "dataset.toml").write_text(toml)
    return folder


def train(folder: Path, artifacts: Path) -> int:
    return recserve(["train", "--data", str(folder), "--artifacts", str(artifacts), "--tiny",
                     "--no-progress"])  # fmt: skip


@pytest.mark.parametrize("name", ["ratings", "money", "implicit", "bare_items"])
def test_each_shape_trains_a_complete_bundle(name: str, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    assert train(shape(name, tmp_path / name), artifacts) == 0
    bundle = Bundle.load(artifacts / (artifacts / "LATEST").read_text().strip())
    m, facts = bundle.manifest, bundle.dataset
    assert isinstance(facts, DatasetFacts) and facts.name == name
    assert facts.has_ratings == (name == "ratings")
    if name == "ratings":
        assert facts.rating_scale == (0.5, 5.0)
        assert m["metrics"]["rating"]["rmse"] > 0
    assert facts.value_unit == ("EUR" if name == "money" else "interactions")
    assert facts.repeat == (name == "money")
    spec = m["feature_spec"]
    if name == "implicit":
        assert [f["name"] for f in spec["user_fields"]] == ["region", "age"]
        assert [f["name"] for f in spec["item_fields"]] == ["brand", "weight_g"]
        assert spec["user_fields"][0]["values"] == ["north", "south"]
        assert len(spec["item_fields"][1]["boundaries"]) >= 3  # quantile buckets
    else:
        assert spec["user_fields"] == []
    assert {"ranker.onnx", "user_tower.onnx", "items.faiss", "user_value.onnx"} <= set(m["files"])


def test_bad_data_writes_no_bundle_and_keeps_latest(tmp_path: Path, capsys) -> None:
    artifacts = tmp_path / "artifacts"
    good = shape("ratings", tmp_path / "good")
    assert train(good, artifacts) == 0
    latest = (artifacts / "LATEST").read_text()
    bad = shape("money", tmp_path / "bad")
    with open(bad / "events.csv", "a") as fh:
        fh.write("u1,i1,not-a-time,purchase,3.5,1\n")
    assert train(bad, artifacts) == 1
    err = capsys.readouterr().err
    assert "no bundle written" in err and "column timestamp: not a timestamp" in err
    assert (artifacts / "LATEST").read_text() == latest
    assert sorted(p.name for p in artifacts.iterdir() if p.name != "LATEST") == [latest.strip()]


def test_data_check_prints_a_summary_or_every_problem(tmp_path: Path, capsys) -> None:
    folder = shape("implicit", tmp_path / "shop")
    assert recserve(["data", "check", str(folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"] == N_USERS * PER_USER and summary["users"] == N_USERS
    assert set(summary["event_types"]) == {"view", "cart", "purchase"}
    assert "ratings" not in summary and "money" not in summary
    (folder / "items.csv").write_text("item_id,brand,weight_g\ni1,b1,-\ni1,b2,5\n")
    assert recserve(["data", "check", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "items.csv, line 3, column item_id: duplicate id" in err
    assert "items.csv, line 2, column weight_g: not a number" in err
    assert "column item_id: item not in the items file" in err


def test_unavailable_items_are_never_recommended_and_prices_are_served(tmp_path: Path) -> None:
    from services.contract.vocab import Vocabulary
    from services.gateway.catalog import GatewayCatalog
    from services.retrieval.retriever import Retriever

    artifacts = tmp_path / "artifacts"
    assert train(shape("money", tmp_path / "money"), artifacts) == 0
    bundle = Bundle.load(artifacts / (artifacts / "LATEST").read_text().strip())
    items = Vocabulary.load(bundle.path("item_ids.npy"))
    rows = items.indices([f"i{i}" for i in UNAVAILABLE])
    retriever = Retriever.from_bundle(bundle, encoder=None)
    assert not retriever.index.available[rows].any()
    assert retriever.index.available[1:].sum() == N_ITEMS - len(UNAVAILABLE)
    catalog = GatewayCatalog.from_bundle(bundle)
    popular = catalog.popular(N_ITEMS)
    assert len(popular) == N_ITEMS - len(UNAVAILABLE) and not set(rows) & set(popular.tolist())
    prices = pd.read_csv(tmp_path / "money" / "items.csv").set_index("item_id")["price"]
    assert catalog.price(int(items.index("i7"))) == pytest.approx(prices["i7"])
    assert bundle.dataset.currency == "EUR"


def test_too_short_a_log_is_refused_before_training(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "short"
    folder.mkdir()
    ev = events_frame(seed=1)
    ev["timestamp"] = 1_700_000_000 + (ev["timestamp"] - ev["timestamp"].min()) // 30  # 6 days
    ev.to_csv(folder / "events.csv", index=False)
    assert train(folder, tmp_path / "artifacts") == 1
    err = capsys.readouterr().err
    assert "no bundle written" in err and "needs at least 28" in err
    assert not (tmp_path / "artifacts" / "LATEST").exists()
