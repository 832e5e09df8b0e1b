"""The cold-item section of reports/eval.md (results["cold_items"] from
training.evaluate.cold_items; protocol in docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABELS = {
    "content": "content: text → MiniLM → ridge into the tower space (ships in the bundle)",
    "item_tower_side_features": "item tower on a never-trained id (genre + year features)",
    "genre_match": "genre match: user's training genre profile · item genres",
    "random": "random order",
    "upper_bound": "upper bound: two-tower trained with the cold items' interactions",
}


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


ARM_LABELS = {
    "proxy": "(a) proxy: scored as its nearest trained item (serving before schema 2)",
    "own_features": "(b) own features: unknown id, own tags, own content vector (serving now)",
    "own_features_with_attributes": "(b') own features + own attribute codes (year)",
}


def cold_ranking_section(ranking: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines of the ranker part (training.evaluate.cold_ranking); none when absent."""
    if not ranking:
        return []
    rows = []
    for arm, label in ARM_LABELS.items():
        m = ranking["arms"].get(arm)
        if m is None:
            continue
        a, b, w = m["cold_only"], m["all_items"], m["warm_only"]
        rows.append(
            f"| {label} | {_f(a['auc'])} | {_f(a['recall@20'])} | {_f(a['ndcg@10'])} | "
            f"{_f(b['cold_auc'])} | {_f(b['cold_recall@100'])} | {b['cold_in_top100']:.1f} | "
            f"{_f(b['warm_recall@20'])} | {_f(b['warm_ndcg@10'])} | {_f(w['auc'])} | "
            f"{_f(w['recall@20'])} |"
        )
    identical = "identical" if ranking["warm_scores_identical"] else "NOT identical"
    deltas = []
    for arm, by_metric in ranking.get("versus_proxy", {}).items():
        label = ARM_LABELS[arm].split(":")[0].split(" ")[0]
        for metric, d in by_metric.items():
            lo, hi = d["ci95"]
            deltas.append(
                f"| {label} | {metric} | {d['delta']:+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
                f"{d.get('better', 0)} / {d.get('equal', 0)} / {d.get('worse', 0)} |"
            )
    if deltas:
        deltas = [
            "Own features minus proxy, per user (paired; 95% bootstrap interval over users, "
            "which does not cover the ranker's training noise: one seed):",
            "",
            "| arm | metric | mean difference | 95% interval | users better / equal / worse |",
            "|---|---|---|---|---|",
            *deltas,
            "",
        ]
    return [
        "### Cold items in the ranker: proxy vs own features",
        "",
        f"A ranker ({ranking['ranker_epochs']} epoch(s), the bundle's training code, the "
        "two-tower score as an input) is trained on the same cold-removed events (the cold items "
        "are never its hard negatives either) and orders by p_interact. Each cold item is scored "
        "(a) as its proxy, the warm item of highest inner product with its content vector (the "
        "proxy has the same genres for "
        f"{100 * ranking['proxy_same_tags']:.0f}% of the cold items), or (b) as serving scores an "
        "added item now: a row past the trained tables (unknown id), its own genres, no "
        "attributes, its content vector as item_vectors; (b') adds its own year code. Same "
        f"{ranking['n_users']} users and relevant cold items as above; items the user had in "
        "training are no candidates. cold only: the cold items ranked (AUC per user vs the other "
        "cold items); all items: every item ranked (cold AUC vs every non-relevant item; warm: "
        f"the same users' {ranking['n_warm_test_interactions']} warm test interactions in "
        "those lists); warm only: the warm items ranked, the sanity check. Warm items' scores "
        f"are {identical} across the arms.",
        "",
        "| cold items scored as | cold only: AUC | recall@20 | ndcg@10 | all items: cold AUC | "
        "cold recall@100 | cold in top-100 | warm recall@20 | warm ndcg@10 | "
        "warm only: AUC | recall@20 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *deltas,
        f"Ranker training {ranking['ranker_seconds']:.0f} s, scoring "
        f"{ranking['seconds'] - ranking['ranker_seconds']:.0f} s.",
        "",
    ]


def _rerun_note(cold: Mapping[str, Any]) -> list[str]:
    if not cold.get("rerun"):
        return []
    return [
        f"(This section was recomputed alone by `{cold['rerun']}` after the last full "
        "`make eval`; every other section, and the total time, are from that run.)",
        "",
    ]


def cold_items_section(cold: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines; an explanatory line when the run skipped the cold-item evaluation."""
    lines = ["## Cold items: retrieved from their text alone", ""]
    if not cold:
        return [*lines, "Not run (EvalConfig.cold_items=False).", ""]
    proj = cold["projection"]
    rows = []
    for name, label in LABELS.items():
        a, b = cold["cold_only"].get(name), cold["all_items"].get(name)
        if a is None or b is None:
            continue
        rows.append(f"| {label} | {_f(a['recall@20'])} | {_f(a['ndcg@10'])} | "
                    f"{_f(b['recall@100'])} | {b['cold_in_top100']:.1f} |")  # fmt: skip
    return [
        *lines,
        f"A seeded (seed {cold['seed']}) random {100 * cold['fraction']:.0f}% of the catalog "
        f"({cold['n_cold_items']} items) is cold: their {cold['n_train_removed']} training "
        f"interactions are removed, the two-tower ({cold['retrieval_epochs']} epochs) trains on "
        "the rest and the text → tower projection is fitted on the warm items (ridge, "
        f"λ={proj['lambda']} picked on "
        f"{proj['n_heldout']} held-out warm items). Relevant: the {cold['n_test_interactions']} "
        f"test interactions of {cold['n_users']} users with {cold['n_cold_items_in_test']} "
        "cold items. (a) ranks the cold items only; (b) ranks every unseen item, warm items by "
        "their tower embedding and cold items by the system's embedding; `cold in top-100` is "
        "the mean number of cold items in a user's top 100 (10% of the catalog is cold).",
        "",
        "| system | (a) recall@20 | (a) ndcg@10 | (b) recall@100 | cold in top-100 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Projection on held-out warm items (the true item among all item embeddings): "
        f"recall@10 {_f(proj['heldout']['recall@10'])}, mean cosine "
        f"{_f(proj['heldout']['mean_cosine'])}; the same fit on a shuffled text/item pairing: "
        f"{_f(proj['heldout_shuffled_pairing']['recall@10'])}, "
        f"{_f(proj['heldout_shuffled_pairing']['mean_cosine'])}. Popularity is no baseline "
        f"here: cold items have none. Took {cold['seconds']:.0f} s.",
        "",
        *_rerun_note(cold),
        *cold_ranking_section(cold.get("ranking")),
    ]
