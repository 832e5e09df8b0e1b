"""End-to-end training: data -> split -> two-tower + ranker + rating model -> metrics -> ONNX
(parity-checked) -> FAISS index -> content encoder (item text -> tower space, training.content)
-> user-value model -> bundle published under artifacts/<version>. ranker.onnx = the ranker's
p_interact beside the rating model's rating and p_positive (training.models.rating.ServedRanker).

    bundle_dir = build_bundle(TrainConfig(tiny=True))

The served models are the ones trained on the train split (the metrics describe exactly them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting collapse on a busy 2-core box (measured: a ranker
# epoch 7 s -> 40 s with two other busy processes; 10 s with PASSIVE). libgomp reads this once,
# when torch loads, so it only helps if this module (or __main__/conftest) is imported first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from services.common.content import CONTENT_ENCODER_FILE
from services.common.features import SECONDS_PER_DAY
from training import distributed
from training.bundle import BundleWriter, new_version, write_tables
from training.data import InteractionData
from training.data.builtin import resolve
from training.data.dataset import load_dataset
from training.encode import EncodedCatalog, build_catalog, index_events
from training.export import describe_onnx, export_ranker, export_user_tower, parity_max_abs_error
from training.index import build_item_index, save_index, tag_centroids
from training.metrics import (
    evaluate_ranker,
    evaluate_retrieval,
    evaluate_served_rating,
    heldout_ranking_inputs,
)
from training.models import ItemTower, Ranker, RankerConfig, TwoTower, TwoTowerConfig, UserTower
from training.models.negatives import NegativeSampler, history_negatives, retrieval_candidates
from training.models.ranker import RetrievalScore, ranker_loss
from training.models.rating import ServedRanker
from training.models.rating_fit import latest_histories
from training.models.rating_train import RatingTrainConfig, train_rating_model
from training.models.train import (
    Batch,
    FitConfig,
    basket_items,
    fit,
    has_baskets,
    make_examples,
)
from training.split import temporal_split
from training.value_step import (
    VALUE_MAX_CUSTOMERS,
    check_value_span,
    sample_customers,
    value_section,
    value_view,
)

TORCH_THREADS = 2
BASKET_WIDTH = 48  # items of one basket kept out of its history negatives (longer: the first 48)
# value_epochs None in FULL_EPOCHS: the user-value model's own default.
FULL_EPOCHS: dict[str, int | None] = {
    "retrieval_epochs": 8,
    "ranker_epochs": 4,
    "value_epochs": None,
}
TINY_EPOCHS: dict[str, int | None] = {"retrieval_epochs": 2, "ranker_epochs": 1, "value_epochs": 2}
TINY_CONTENT_ITEMS = 300
HARD_NEGATIVE_MAX_ITEMS = 200_000
# The manifest's retrieval metrics rank every item for each sampled validation user; this many
# (user, item) scores at most keeps that pass within memory at 1M items.
RETRIEVAL_EVAL_MAX_SCORES = 500_000_000
RATING_ONLY_EPOCHS: dict[str, int | None] = {
    "retrieval_epochs": 0,
    "ranker_epochs": 0,
    "value_epochs": 1,
}


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path = Path("data")
    # The dataset folder (docs/data.md); None: the built-in MovieLens under data_dir/datasets.
    dataset: Path | None = None
    artifacts_dir: Path = Path("artifacts")
    version: str | None = None  # default: UTC timestamp
    seed: int = 0
    # Epochs: None means the preset's default (FULL_EPOCHS, or TINY_EPOCHS when tiny=True).
    retrieval_epochs: int | None = None
    ranker_epochs: int | None = None
    value_epochs: int | None = None
    retrieval_batch_size: int = 1024
    ranker_batch_size: int = 512
    retrieval_lr: float = 3e-3
    ranker_lr: float = 2e-3
    temperature: float = 0.07
    user_dropout: float = 0.1
    history_len: int = 50
    embedding_dim: int = 64
    test_fraction: float = 0.1
    # Ranker: negatives per example for its P(interact) factor (see training.models.negatives),
    # the retrieval pool hard negatives are drawn from, and whether the frozen two-tower score
    # is one of the ranker's inputs.
    # Measured on validation (two-stage Recall@20 / NDCG@10), one P(positive) logit: 4+4 from
    # top-100: .227/.189; 8+2 from top-300: .254/.223; 16+0 from top-1000: .257/.229
    # (retrieval alone: .264/.236). Factorised P(interact) x P(likes | interact), 16+0 from
    # top-1000: .250/.217, P(interact) alone .273/.247: the likes factor costs top-K, since any
    # held-out interaction counts. So ranker.onnx exports p_interact too and serving orders
    # by it; p_positive (P(rating >= 4)) and the rating are reported alongside.
    ranker_hard_negatives: int = 16
    ranker_sampled_negatives: int = 0
    hard_negative_pool: int = 1000
    ranker_uses_retrieval: bool = True
    # Examples per epoch at most (two-tower and ranker); larger logs sample each epoch afresh.
    examples_per_epoch: int = 2_500_000
    # Buy again (the dataset's behaviour.repeat): the history holds at least repeat_history_len
    # events (the ranker's purchase-record features read it), and each ranker example also gets
    # ranker_history_negatives of the user's earlier items that are not in its basket.
    repeat_history_len: int = 200
    # ... and the ranker does not take the two-tower score as an input. Measured on Instacart's
    # next-basket split (make eval DATA=instacart): with it, two-stage Recall@20 / NDCG@10
    # 0.3117 / 0.3201 (below retrieval alone, 0.3576 / 0.3436: its large fixed weight drowns the
    # purchase-record features); without it 0.4675 / 0.4564.
    repeat_ranker_uses_retrieval: bool = False
    ranker_history_negatives: int = 8
    # The bundle's rating (ranker.onnx `rating`, `p_positive`): a dedicated explicit-feedback
    # model (training.models.rating_train), not a head of the implicit ranker.
    rating: RatingTrainConfig = field(default_factory=RatingTrainConfig)
    # rating_only: a bundle for rating cross-validation. Only the rating model is trained; the
    # two-tower, ranker and value models are exported untrained (0 epochs; value 1 epoch) so
    # the bundle is complete and served by the same code. Its top-K is meaningless.
    rating_only: bool = False
    # make train: metrics.evaluation = this file (the last `make eval`), when it exists.
    eval_metrics: Path | None = Path("reports/eval_metrics.json")
    # Content encoder (cold start from text, training.content): on/off, and how many of the
    # most interacted-with items its projection is fitted on (None: all; tiny: 300).
    content: bool = True
    # At most this many items fit the projection (encoding costs ~9 ms a text on 2 cores).
    content_items: int | None = 20_000
    tiny: bool = False  # quick preset for tests: fewer epochs, same data and code paths
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """Every epoch count filled in from the preset (explicit values win)."""
        preset = TINY_EPOCHS if self.tiny else FULL_EPOCHS
        if self.rating_only:
            preset = RATING_ONLY_EPOCHS
        rating = self.rating.tiny() if self.tiny else self.rating
        content_items = self.content_items
        if self.tiny:
            content_items = min(content_items or TINY_CONTENT_ITEMS, TINY_CONTENT_ITEMS)
        return dataclasses.replace(
            self,
            rating=rating,
            content_items=content_items,
            content=self.content and not self.rating_only,  # rating CV needs no text encoder
            **{k: v for k, v in preset.items() if getattr(self, k) is None},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_args(cls, args: Any, dataset: Path, **overrides: Any) -> TrainConfig:
        """From the options every training command shares (--data-dir, --artifacts, --version,
        --seed, --tiny, --no-progress)."""
        return cls(
            data_dir=args.data_dir,
            dataset=dataset,
            artifacts_dir=args.artifacts,
            version=args.version,
            seed=args.seed,
            tiny=args.tiny,
            progress=not args.no_progress,
            **overrides,
        )


def _evaluation_metrics(path: Path | None) -> dict[str, Any] | None:
    """The last `make eval`'s compact metrics (reports/eval_metrics.json) with their source."""
    if path is None or not Path(path).is_file():
        return None
    import json

    from services.common.bundle import sha256_file

    return {
        **json.loads(Path(path).read_text()),
        "source": str(path),
        "source_sha256": sha256_file(Path(path)),
    }


class Steps:
    """Seconds per pipeline step; with progress on, `say(name, seconds)` after each one
    (default: one "[train] <step>: <s>" line). bench.synthetic_bundle reuses it."""

    def __init__(self, progress: bool, say: Callable[[str, float], None] | None = None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._say = say or (lambda name, seconds: tqdm.write(f"[train] {name}: {seconds:.1f}s"))

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        if self.progress:
            self._say(name, self.seconds[name])


def _subset(arrays: dict[str, np.ndarray], rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[rows]) for k, v in arrays.items()}


def _parity_inputs(
    heldout: dict[str, np.ndarray], n_items: int, seed: int
) -> dict[str, np.ndarray]:
    """Held-out rows (plus one cold-start row: unknown user, empty history) with N=20 random
    candidates, for the ORT-vs-torch parity check."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(heldout["items"]), size=min(255, len(heldout["items"])), replace=False)
    out = _subset(heldout, np.sort(rows))
    out["user_index"][0] = 0
    out["history"][0] = 0
    out["items"] = rng.integers(0, n_items, size=(len(rows), 20), dtype=np.int64)
    out.pop("ratings")
    return out


def _train_two_tower(
    cfg: TrainConfig, catalog: EncodedCatalog, train: pd.DataFrame, examples: Batch
) -> tuple[TwoTower, dict[str, Any]]:
    spec = catalog.spec
    model_cfg = TwoTowerConfig(embedding_dim=cfg.embedding_dim, temperature=cfg.temperature)
    user = UserTower(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        model_cfg,
    )
    item = ItemTower(
        catalog.n_items, catalog.item_tags, catalog.item_attrs, spec.item_cardinalities, model_cfg
    )
    counts = np.bincount(train["item_index"], minlength=catalog.n_items) + 1.0  # +1: smoothing
    model = TwoTower(user, item, np.log(counts / counts.sum()), cfg.temperature)
    fit_cfg = FitConfig(
        int(cfg.retrieval_epochs or 0),
        cfg.retrieval_batch_size,
        cfg.retrieval_lr,
        user_dropout=cfg.user_dropout,
        seed=cfg.seed,
        examples_per_epoch=cfg.examples_per_epoch,
    )
    info = fit(
        model,
        lambda b: model.loss(b["user_index"], b["profile"], b["history"], b["items"]),
        examples,
        fit_cfg,
        desc="two-tower",
        progress=cfg.progress,
    )
    return model, {
        "model": dataclasses.asdict(model_cfg),
        "fit": dataclasses.asdict(fit_cfg),
        **info,
    }


def _train_ranker(
    cfg: TrainConfig,
    catalog: EncodedCatalog,
    train: pd.DataFrame,
    examples: Batch,
    two_tower: TwoTower,
    item_embeddings: np.ndarray,
    repeat: bool = False,
) -> tuple[Ranker, dict[str, Any]]:
    spec = catalog.spec
    hard, sampled = cfg.ranker_hard_negatives, cfg.ranker_sampled_negatives
    if catalog.n_items > HARD_NEGATIVE_MAX_ITEMS:
        # Hard negatives score every item for every user (1M x 1M at scale: hours on 2 cores);
        # a large catalog's ranker learns from popularity-sampled negatives instead.
        hard, sampled = 0, hard + sampled
    model_cfg = RankerConfig(
        hard_negatives=hard,
        sampled_negatives=sampled,
        repeat_features=repeat,
        history_negatives=cfg.ranker_history_negatives if repeat else 0,
        positive_threshold=cfg.rating.positive_threshold,
        rating_scale=cfg.rating.scale,
    )
    retrieval = (
        RetrievalScore(two_tower.user_tower, item_embeddings) if cfg.ranker_uses_retrieval else None
    )
    ranker = Ranker(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        model_cfg,
        retrieval,
    )
    fit_cfg = FitConfig(
        int(cfg.ranker_epochs or 0),
        cfg.ranker_batch_size,
        cfg.ranker_lr,
        weight_decay=1e-4,
        user_dropout=cfg.user_dropout,
        seed=cfg.seed + 1,
        examples_per_epoch=cfg.examples_per_epoch,
    )
    hard = (
        retrieval_candidates(
            two_tower.user_tower,
            item_embeddings,
            catalog.user_profiles,
            latest_histories(catalog, train),
            train,
            cfg.hard_negative_pool,
        )
        if model_cfg.hard_negatives > 0
        else np.zeros((catalog.n_users, 1), dtype=np.int64)
    )
    sampler = NegativeSampler(
        hard,
        np.bincount(train["item_index"], minlength=catalog.n_items),
        model_cfg.hard_negatives,
        model_cfg.sampled_negatives,
        seed=cfg.seed + 2,
    )
    use_negatives = model_cfg.hard_negatives + model_cfg.sampled_negatives > 0
    # user_row survives the fit loop's user-id dropout: hard negatives belong to the real user.
    per_item = {
        **examples,
        "items": examples["items"].unsqueeze(1),  # [B] -> [B, N=1]
        "user_row": examples["user_index"].clone(),
    }
    n_history = model_cfg.history_negatives
    if n_history:  # the example's basket (or the item alone): never its own negatives
        per_item["basket"] = (
            torch.from_numpy(basket_items(train, BASKET_WIDTH))
            if has_baskets(train)
            else per_item["items"]
        )
    generator = torch.Generator().manual_seed(cfg.seed + 3)

    def negatives(b: Batch) -> torch.Tensor | None:
        parts = [sampler(b["user_row"])] if use_negatives else []
        if n_history:
            parts.append(history_negatives(b["history"], b["basket"], n_history, generator))
        return torch.cat(parts, dim=1) if parts else None

    info = fit(
        ranker,
        lambda b: ranker_loss(
            ranker,
            b["user_index"],
            b["profile"],
            b["history"],
            b["items"],
            b["ratings"],
            model_cfg.positive_threshold,
            negatives(b),
        ),
        per_item,
        fit_cfg,
        desc="ranker",
        progress=cfg.progress,
    )
    return ranker, {
        "model": dataclasses.asdict(model_cfg),
        "fit": dataclasses.asdict(fit_cfg),
        "uses_retrieval_score": retrieval is not None,
        "hard_negative_pool": cfg.hard_negative_pool,
        **info,
    }


def has_item_text(items: pd.DataFrame) -> bool:
    """Whether any item has a title or description for the content encoder to read."""
    return any(
        name in items and items[name].fillna("").astype(str).str.len().gt(0).any()
        for name in ("title", "description")
    )


def _content_section(
    cfg: TrainConfig,
    catalog: EncodedCatalog,
    data: InteractionData,
    train_ix: pd.DataFrame,
    item_embeddings: np.ndarray,
    out: Path,
) -> dict[str, Any] | None:
    """content_encoder.onnx + content_tokenizer.json (+ projection) and the manifest section;
    None (no files) when too few items have interactions to fit the projection."""
    from training.content import build_content  # loads transformers: only when it runs

    popularity = np.bincount(train_ix["item_index"], minlength=catalog.n_items)
    return build_content(
        out,
        data.items,
        catalog.items.ids.tolist(),
        item_embeddings,
        popularity,
        seed=cfg.seed,
        max_items=cfg.content_items,
        parity_texts=64 if cfg.tiny else 256,
    )


def build_bundle(config: TrainConfig) -> Path:
    """Train everything on real data and publish artifacts/<version>; returns the bundle dir.

    The per-user temporal holdout (`config.test_fraction`) is the validation set: the manifest's
    metrics are measured on it and the shipped models never saw it.
    """
    cfg = config.resolved()
    data = load_dataset(cfg.dataset or resolve(cfg.data_dir, "movielens"))
    split = temporal_split(data.events, cfg.test_fraction)
    return build_bundle_from_events(
        split.train,
        data,
        cfg,
        valid=split.test,
        split_info=split.describe(),
        evaluation=_evaluation_metrics(cfg.eval_metrics),
    )


def build_bundle_from_events(
    train: pd.DataFrame,
    data: InteractionData,
    config: TrainConfig,
    valid: pd.DataFrame | None = None,
    *,
    split_info: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Train every model on exactly `train` and publish a normal bundle; returns its dir.

    train/valid: events in the canonical schema (training.data.schema). `data` supplies the
    item and user tables (its events only name ids for the vocabularies); `valid` is used only
    to measure the manifest's metrics (nothing is fitted on it). The value model trains on
    `train` too (training.value_step.value_view: money when the dataset has it, else
    engagement). interactions.parquet = `train`.
    `evaluation` (optional) is recorded as the manifest's metrics.evaluation.
    """
    cfg = config.resolved()
    if distributed.current() is not None:  # every rank names the bundle rank 0 publishes
        cfg = dataclasses.replace(
            cfg, version=distributed.broadcast_str(cfg.version or new_version())
        )
    ctx = distributed.current()
    torch.set_num_threads(max(1, TORCH_THREADS // (ctx.world_size if ctx else 1)))
    torch.manual_seed(cfg.seed)
    steps = Steps(cfg.progress)
    value_data = value_view(data, train)
    check_value_span(value_data)  # before any training: refuse early, with the reason
    value_data = sample_customers(value_data, VALUE_MAX_CUSTOMERS, cfg.seed)
    if data.config.repeat:  # buy again: the history must reach back over several baskets
        cfg = dataclasses.replace(
            cfg,
            history_len=max(cfg.history_len, cfg.repeat_history_len),
            ranker_uses_retrieval=cfg.ranker_uses_retrieval and cfg.repeat_ranker_uses_retrieval,
        )
    scale = data.config.ratings  # the dataset's rating scale, for the ranker and rating model
    cfg = dataclasses.replace(
        cfg,
        rating=dataclasses.replace(
            cfg.rating, scale=(scale.low, scale.high), positive_threshold=scale.like_threshold
        ),
    )
    with steps("split + features"):
        catalog = build_catalog(data, cfg.history_len)
        train_ix = index_events(catalog, train)
        examples = make_examples(catalog, train_ix)
        valid_ix = index_events(catalog, valid) if valid is not None and len(valid) else None
        heldout = (
            heldout_ranking_inputs(catalog, train_ix, valid_ix)
            if valid_ix is not None
            else _training_rows(examples)
        )
    with steps("train two-tower"):
        two_tower, tt_info = _train_two_tower(cfg, catalog, train_ix, examples)
        item_embeddings = two_tower.item_embeddings(catalog.n_items)
    with steps("train ranker"):
        ranker, rk_info = _train_ranker(
            cfg, catalog, train_ix, examples, two_tower, item_embeddings, data.config.repeat
        )
    if not distributed.is_main():  # rank 0 evaluates, exports and publishes; the others wait
        distributed.barrier()
        return cfg.artifacts_dir / cfg.version
    rating_model, rt_info = None, {"skipped": "the dataset has no ratings"}
    if data.has_ratings and train["rating"].notna().any():
        with steps("train rating model"):  # explicit-feedback model: small, rank 0 only
            rating_model, rt_info = train_rating_model(catalog, train_ix, cfg.rating)
    elif cfg.progress:
        tqdm.write("[train] rating model: skipped (the dataset has no ratings)")
    served = ServedRanker(ranker, rating_model)
    metrics: dict[str, Any] = {}
    if valid_ix is not None:
        with steps("evaluate"):
            metrics["retrieval"] = evaluate_retrieval(
                two_tower.user_tower, item_embeddings, catalog, train_ix,
                _sample_users(valid_ix, RETRIEVAL_EVAL_MAX_SCORES // catalog.n_items, cfg.seed),
                repeat=data.config.repeat,
            )  # fmt: skip
            if rating_model is not None:
                mean = float(train["rating"].mean())
                metrics["ranker"] = evaluate_ranker(ranker, heldout, mean, scale.like_threshold)
                metrics["rating"] = evaluate_served_rating(served, heldout)
    if evaluation is not None:
        metrics["evaluation"] = evaluation
    with BundleWriter(cfg.artifacts_dir, cfg.version) as writer:
        out = writer.dir
        parity_in = _parity_inputs(heldout, catalog.n_items, cfg.seed)
        sample = _subset(_parity_inputs(heldout, catalog.n_items, cfg.seed + 1), slice(1, 4))
        with steps("export onnx"):
            export_user_tower(two_tower.user_tower, out / "user_tower.onnx", sample)
            export_ranker(served, out / "ranker.onnx", sample)
            parity = {
                "user_tower.onnx": parity_max_abs_error(
                    two_tower.user_tower, out / "user_tower.onnx", parity_in
                ),
                "ranker.onnx": parity_max_abs_error(served, out / "ranker.onnx", parity_in),
            }
        with steps("faiss index"):
            item_index = build_item_index(item_embeddings)
            save_index(item_index, out / "items.faiss")
            np.save(out / "item_embeddings.npy", item_embeddings, allow_pickle=False)
            centroids = tag_centroids(item_embeddings, catalog.item_tags)
            np.save(out / "tag_centroids.npy", centroids, allow_pickle=False)
        with steps("tables"):
            write_tables(out, catalog, data.items, data.users, train)
        content = None
        if cfg.content and not has_item_text(data.items):
            if cfg.progress:
                tqdm.write("[train] content encoder: skipped (items have no title or description)")
        elif cfg.content:
            with steps("content encoder"):
                content = _content_section(cfg, catalog, data, train_ix, item_embeddings, out)
        if content is not None:
            parity[CONTENT_ENCODER_FILE] = content["parity"]["max_abs_error"]
        as_of_day = int(train["timestamp"].max()) // SECONDS_PER_DAY
        with steps("train user-value"):
            value, metrics["user_value"], parity["user_value.onnx"] = value_section(
                value_data, out, as_of_day,
                seed=cfg.seed, epochs=cfg.value_epochs, progress=cfg.progress,
            )  # fmt: skip
        models = {
            name: {**describe_onnx(out / name), "parity_max_abs_error": err}
            for name, err in parity.items()
        }
        fields = {
            "data": {
                "source": data.source,
                "sha256": data.sha256,
                "n_events": data.n_events,
                "split": split_info or _supplied_split(train, valid),
                "value_source": value_data.source,
                "value_sha256": value_data.sha256,
            },
            "dataset": data.config.to_json(),
            "rating_model": None
            if rating_model is None
            else {"scale": [scale.low, scale.high], "positive": scale.like_threshold},
            "metrics": metrics,
            "feature_spec": catalog.spec.to_json(),
            "embedding_dim": cfg.embedding_dim,
            "index_type": item_index.index_type,
            "index": item_index.info,
            "models": models,
            "value": value,
            **({"content": content} if content is not None else {}),
            "training": {
                "config": cfg.to_json(),
                "torch_threads": TORCH_THREADS,
                "two_tower": tt_info,
                "ranker": rk_info,
                "rating": rt_info,
                "rating_only": cfg.rating_only,
                "seconds": steps.seconds,
            },
        }
        with steps("publish"):
            bundle_dir = writer.publish(fields)
    distributed.barrier()
    return bundle_dir


def _supplied_split(train: pd.DataFrame, valid: pd.DataFrame | None) -> dict[str, Any]:
    """The manifest's data.split entry for a caller-supplied train (and validation) set."""
    return {
        "kind": "supplied",
        "n_train": len(train),
        "n_valid": 0 if valid is None else len(valid),
        "n_valid_users": 0 if valid is None else int(valid["user_id"].nunique()),
    }


def _sample_users(events: pd.DataFrame, max_users: int, seed: int) -> pd.DataFrame:
    """The events of at most max_users users, drawn at random (all when there are fewer)."""
    users = events["user_index"].unique()
    if users.size <= max_users:
        return events
    keep = np.random.default_rng(seed).choice(users, size=max(1, max_users), replace=False)
    return events[events["user_index"].isin(keep)]


def _training_rows(examples: Batch) -> dict[str, np.ndarray]:
    """Training examples as ranking inputs (items [N, 1]): parity rows when there is no valid."""
    out = {k: v.numpy() for k, v in examples.items()}
    out["items"] = out["items"][:, None]
    return out
