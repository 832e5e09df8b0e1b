"""TrainConfig: every setting of a training run, its epoch presets, and what the dataset
changes in it (for_dataset)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.contract import DatasetConfig
from training.models.rating_train import RatingTrainConfig

# value_epochs None in FULL_EPOCHS: the user-value model's own default.
FULL_EPOCHS: dict[str, int | None] = {
    "retrieval_epochs": 8,
    "ranker_epochs": 4,
    "value_epochs": None,
}
TINY_EPOCHS: dict[str, int | None] = {"retrieval_epochs": 2, "ranker_epochs": 1, "value_epochs": 2}
TINY_CONTENT_ITEMS = 300
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
    # The user tower's history encoder (training.models.two_tower): "mean" (masked mean + most
    # recent item), "transformer" (causal self-attention over the user_seq_len most recent
    # items), or "auto": both are trained and the one with the better validation
    # retrieval metric (encoder_selection_metric of training.metrics.evaluate_retrieval) is
    # served; without validation events, a held-out slice of train (each user's last basket,
    # else their last test_fraction events) decides and the chosen one is retrained on all of
    # train. training.steps.two_tower.train_user_tower. "auto" is the default: the served
    # bundle uses the encoder that wins on validation, and the manifest records which
    # (training.user_encoder). The tiny preset (tests) trains "mean" for "auto".
    user_encoder: str = "auto"
    # "auto" without CUDA: the transformer is trained only when its examples x epochs are at
    # most this many (MovieLens-100K: ~0.6M, ~4 min on 2 cores; a 20M-event log would take
    # hours); above it the mean tower is served and the manifest says why. None: no limit.
    auto_cpu_transformer_budget: int | None = 2_000_000
    user_seq_len: int = 50
    # One block, not two: on MovieLens' validation events the 1-block transformer's retrieval
    # Recall@20 / NDCG@10 are 0.2906 / 0.1994 against 0.2864 / 0.1980 with 2, and its tower
    # costs ~40% less to serve (docs/user_encoders.md)
    user_seq_layers: int = 1
    user_seq_dropout: float = 0.1
    # The transformer also reads each history event's age and gap (user_seq_time) and its
    # kind: view, purchase, a rating's step (user_seq_kinds); TwoTowerConfig.seq_time/seq_kinds
    user_seq_time: bool = False
    user_seq_kinds: bool = False
    encoder_selection_metric: str = "ndcg_at_10"
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
    # The ranker's MLP and target-attention widths (training.models.ranker.RankerConfig);
    # `python -m bench.ranker_shapes` says what smaller ones cost to serve.
    ranker_hidden_dims: tuple[int, ...] = (64, 32)
    ranker_attention_dim: int = 32
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
        encoder = "mean" if self.tiny and self.user_encoder == "auto" else self.user_encoder
        return dataclasses.replace(
            self,
            rating=rating,
            user_encoder=encoder,
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


def evaluation_metrics(path: Path | None) -> dict[str, Any] | None:
    """The last `make eval`'s compact metrics (reports/eval_metrics.json) with their source."""
    if path is None or not Path(path).is_file():
        return None
    import json

    from services.contract.bundle import sha256_file

    return {
        **json.loads(Path(path).read_text()),
        "source": str(path),
        "source_sha256": sha256_file(Path(path)),
    }


def for_dataset(cfg: TrainConfig, dataset: DatasetConfig) -> TrainConfig:
    """The config for this dataset: buy again (behaviour.repeat) lengthens the history and
    takes the two-tower score out of the ranker's inputs; the rating model and the ranker use
    the dataset's rating scale."""
    if dataset.repeat:  # buy again: the history must reach back over several baskets
        cfg = dataclasses.replace(
            cfg,
            history_len=max(cfg.history_len, cfg.repeat_history_len),
            ranker_uses_retrieval=cfg.ranker_uses_retrieval and cfg.repeat_ranker_uses_retrieval,
        )
    scale = dataset.ratings  # the dataset's rating scale, for the ranker and rating model
    return dataclasses.replace(
        cfg,
        rating=dataclasses.replace(
            cfg.rating, scale=(scale.low, scale.high), positive_threshold=scale.like_threshold
        ),
    )
