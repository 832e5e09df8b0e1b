"""reports/eval.md and its PNGs from the results of training.evaluate.run (eval.json), plus the
external libraries' numbers from reports/external_baselines.json when that file exists."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from training.evaluate.report_cold import cold_items_section
from training.evaluate.report_peers import encoders_section, movielens_peers_section

TOPK_COLUMNS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "precision@10",
                "hit_rate@10", "mrr@10", "coverage@10", "diversity@10", "novelty@10")  # fmt: skip
LABELS = {
    "popularity": "popularity (ref)",
    "item_knn": "item-kNN cosine (ref)",
    "implicit_als": "implicit ALS MF (ref)",
    "ease": "EASE (ref)",
    "retrieval": "ours: retrieval alone",
    "two_stage": "ours: retrieval → ranking",
    "gateway": "ours: through the gateway",
}


def _f(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float | int) else str(x)


def _lift(ours: float, ref: float) -> str:
    return "–" if not ref else f"{100.0 * (ours / ref - 1.0):+.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def plot_curves(results: Mapping[str, Any], out: Path) -> list[str]:
    names = []
    for metric in ("recall", "ndcg"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, curves in results["topk"]["curves"].items():
            if name == "gateway":
                continue
            ks = range(1, len(curves[metric]) + 1)
            ax.plot(ks, curves[metric], label=LABELS.get(name, name),
                    linewidth=2.2 if name == "two_stage" else 1.2)  # fmt: skip
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric.upper() if metric == 'ndcg' else 'Recall'}@K")
        ax.set_title(f"{metric}@K, per-user temporal 80/20, MovieLens-100K")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"eval_{metric}_at_k.png", dpi=110)
        plt.close(fig)
        names.append(f"eval_{metric}_at_k.png")
    return names


def plot_calibration(results: Mapping[str, Any], out: Path) -> str:
    cal = results["probability"]["calibration"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect")
    ax.plot(cal["predicted"], cal["observed"], "o-", label="p_positive: P(rating ≥ 4)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of rating ≥ 4")
    ax.set_title(f"Calibration (ECE {results['probability']['ece']:.3f})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eval_calibration.png", dpi=110)
    plt.close(fig)
    return "eval_calibration.png"


def plot_rating_buckets(results: Mapping[str, Any], out: Path) -> str:
    by = results["rating"]["by_activity"]
    buckets = list(next(iter(by.values())).keys())
    buckets.sort(key=lambda b: int(b.lstrip("<>=").split("-")[0]) + (0.5 if b[0] == ">" else 0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(by)
    for j, (name, rows) in enumerate(by.items()):
        xs = [i + j * width for i in range(len(buckets))]
        ax.bar(xs, [rows.get(b, {}).get("rmse", 0) for b in buckets], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(buckets))], buckets)
    ax.set_xlabel("user's training ratings in the fold")
    ax.set_ylabel("RMSE (5 folds pooled)")
    ax.set_ylim(0.6, None)
    ax.set_title("Rating error by user activity")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "eval_rating_by_activity.png", dpi=110)
    plt.close(fig)
    return "eval_rating_by_activity.png"


def plot_cold_warm(results: Mapping[str, Any], out: Path) -> str:
    cw = results["topk"]["cold_warm"]
    names = [n for n in cw if n != "gateway"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, metric in zip(axes, ("recall@20", "ndcg@10"), strict=True):
        for j, group in enumerate(("cold", "warm")):
            ax.bar([i + j * 0.4 for i in range(len(names))],
                   [cw[n][group][metric] for n in names], 0.4, label=group)  # fmt: skip
        ax.set_xticks([i + 0.2 for i in range(len(names))], names, rotation=30, fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "eval_cold_warm.png", dpi=110)
    plt.close(fig)
    return "eval_cold_warm.png"


def _external_section(path: Path) -> list[str]:
    lines = ["## External libraries (same split files)", ""]
    if not path.is_file():
        return [*lines, f"`{path.name}` not found: run the external baselines to fill this in.", ""]
    entries = json.loads(path.read_text())
    metrics = sorted({m for e in entries for m in e.get("metrics", {})})
    rows = [[e.get("library", ""), str(e.get("version", "")), e.get("model", ""),
             e.get("split", ""), *[_f(e["metrics"].get(m)) for m in metrics],
             f"`{e.get('command', '')}`"] for e in entries]  # fmt: skip
    return [
        *lines,
        *_table(["library", "version", "model", "split", *metrics, "command"], rows),
        "",
    ]


def write_report(results: Mapping[str, Any], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_curves(results, out_dir)
    plots += [plot_calibration(results, out_dir), plot_cold_warm(results, out_dir)]
    plots.append(plot_rating_buckets(results, out_dir))
    topk, meta = results["topk"], results["meta"]
    best = topk["best_reference"]
    sys = topk["systems"]
    lines = [
        "# Offline evaluation — MovieLens-100K",
        "",
        "Generated by `make eval` (`python -m training.evaluate run`); do not edit by hand.",
        f"Data {meta['data']['source']} (sha256 {meta['data']['sha256'][:12]}…), "
        f"{meta['data']['n_events']} ratings. Took {meta['seconds']['total']:.0f} s.",
        "",
        "Protocols. **Top-K**: per-user temporal split, each user's last 20% of ratings (at "
        "least one) are test; every model trains on the other 80%; reference hyper-parameters "
        "are tuned on a validation set carved the same way from the end of train. Full ranking "
        "over all 1,682 items minus the user's training items; every rated test item is "
        "relevant (binary). **Rating**: 5-fold random CV over all ratings. Splits are on disk "
        "as TSV (`data/splits/`, see docs/evaluation.md).",
        "",
        "## Top-K: ours against the references",
        "",
    ]
    rows = [[LABELS.get(n, n), *[_f(sys[n].get(c)) for c in TOPK_COLUMNS]] for n in sys]
    lines += _table(["system", *TOPK_COLUMNS], rows)
    lines += ["", f"Lift over the best reference ({LABELS.get(best, best)}, by NDCG@10) and "
              "over popularity:", ""]  # fmt: skip
    lift_rows = []
    for n in ("retrieval", "two_stage", "gateway"):
        if n in sys:
            lift_rows.append([LABELS[n], *[
                f"{_lift(sys[n][m], sys[best][m])} / {_lift(sys[n][m], sys['popularity'][m])}"
                for m in ("recall@20", "ndcg@10", "hit_rate@10", "mrr@10")
            ]])  # fmt: skip
    lines += _table(["system", "recall@20", "ndcg@10", "hit_rate@10", "mrr@10"], lift_rows)
    checks = results["checks"]
    lines += [
        "",
        f"- Two-stage answer not worse than retrieval alone (Recall@20 and NDCG@10): "
        f"**{'PASS' if checks['two_stage_not_worse'] else 'FAIL'}** "
        f"({_f(sys['two_stage']['recall@20'])} vs {_f(sys['retrieval']['recall@20'])}; "
        f"{_f(sys['two_stage']['ndcg@10'])} vs {_f(sys['retrieval']['ndcg@10'])}).",
    ]
    if checks.get("gateway_matches_two_stage") is not None:
        lines.append(
            f"- Gateway answer (embedded gateway over gRPC, `exclude_seen=True`) identical to the "
            f"in-process two-stage answer for {100 * checks['gateway_matches_two_stage']:.1f}% "
            "of users."
        )
    tuning = topk["tuning"]["best"]
    lines += [
        f"- Reference hyper-parameters (picked on validation by {topk['tuning']['metric']}): "
        f"item-kNN {tuning['item_knn']}, implicit ALS {tuning['implicit_als']}"
        + (f", EASE {tuning['ease']}." if "ease" in tuning else "."),
        "- coverage@K: share of the catalog shown to anyone; diversity@10: mean pairwise tag "
        "cosine distance in a list; novelty@10: mean -log2(share of training users with the "
        "item), in bits.",
        "",
        "![Recall@K](eval_recall_at_k.png) ![NDCG@K](eval_ndcg_at_k.png)",
        "",
        f"### Cold vs warm users (cold: ≤ {topk['cold_threshold']} training ratings; "
        f"{topk['cold_warm_users']['cold']} cold, {topk['cold_warm_users']['warm']} warm)",
        "",
    ]
    cw = topk["cold_warm"]
    lines += _table(
        ["system", "cold recall@20", "cold ndcg@10", "warm recall@20", "warm ndcg@10"],
        [[LABELS.get(n, n), _f(cw[n]["cold"]["recall@20"]), _f(cw[n]["cold"]["ndcg@10"]),
          _f(cw[n]["warm"]["recall@20"]), _f(cw[n]["warm"]["ndcg@10"])] for n in cw],
    )  # fmt: skip
    lines += ["", "![cold vs warm](eval_cold_warm.png)", ""]
    prob = results["probability"]
    lines += [
        "## P(rating ≥ 4) on the top-K test ratings",
        "",
        "`p_positive` of ranker.onnx: the rating model's logistic P(rating ≥ 4), fitted on a "
        "validation set carved out of train.",
        "",
        f"AUC {_f(prob['auc'])}, log loss {_f(prob['log_loss'])}, ECE {_f(prob['ece'])}, "
        f"positive rate {_f(prob['positive_rate'], 3)}. Served `rating` on the same events: RMSE "
        f"{_f(prob['rating_on_topk_test']['rmse'])}, MAE {_f(prob['rating_on_topk_test']['mae'])}"
        " (temporal: harder than random CV).",
        "",
        "![calibration](eval_calibration.png)",
        "",
        "## Rating: 5-fold random cross-validation",
        "",
    ]
    rating = results["rating"]
    lines += _table(
        ["system", "RMSE (mean of folds)", "± std", "MAE", "RMSE per fold", "seconds"],
        [[n, _f(r["rmse"]), _f(r["rmse_std"]), _f(r["mae"]),
          " ".join(_f(x, 3) for x in r["rmse_folds"]), _f(r["seconds"], 1)]
         for n, r in rating["systems"].items()],
    )  # fmt: skip
    lines += [
        "",
        "ours = ranker.onnx's `rating` of a bundle trained on each fold's train, asked through "
        "the ranking service's OnnxRanker: the bundle's rating model, a blend of Bayesian MF "
        "(Gibbs sampling) and item-based AutoRec with weights fitted on a random 10% of the "
        "fold's train (training/models/rating_train.py; docs/evaluation.md).",
        "",
        f"Biased MF (ALS) hyper-parameters picked on a random 10% of fold 0's train: "
        f"{rating['best']}. Target for ours: RMSE ≤ 0.895.",
        "",
        "![rating error by activity](eval_rating_by_activity.png)",
        "",
        *cold_items_section(results.get("cold_items")),
        "## RecommendTags: do tag affinities predict the tags of the user's next items?",
        "",
    ]
    tags = results["tags"]
    tag_cols = ("ndcg@1", "ndcg@3", "recall@3", "weighted_recall@3", "ndcg@5", "mrr@5")
    lines += _table(
        ["system", *tag_cols],
        [[n, *[_f(r[c]) for c in tag_cols]] for n, r in tags["systems"].items()],
    )
    lines += [
        "",
        f"{tags['n_users']} test users; relevant tags = the genres of their test items "
        f"({tags['mean_relevant_tags']:.1f} per user on average, of 19). `tag_popularity` is the "
        "cold-start answer (the same ranking for everyone); `user_history` ranks tags by the "
        "user's own training items. weighted_recall@3: share of the test items' tag mass in the "
        "top 3.",
        "",
        *_external_section(out_dir / "external_baselines.json"),
        *movielens_peers_section(out_dir / "external_baselines.json", sys),
        *encoders_section(
            out_dir / "encoders_movielens.json", out_dir / "external_baselines.json", sys
        ),
        "",
        "## Timings (seconds, 2-core machine shared with other jobs)",
        "",
    ]
    lines += _table(["step", "seconds"], [[k, _f(v, 1)] for k, v in meta["seconds"].items()])
    path = out_dir / "eval.md"
    path.write_text("\n".join(lines) + "\n")
    return path
