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
        f"A seeded random {100 * cold['fraction']:.0f}% of the catalog ({cold['n_cold_items']} "
        f"items) is cold: their {cold['n_train_removed']} training interactions are removed, the "
        f"two-tower ({cold['retrieval_epochs']} epochs) trains on the rest and the text → tower "
        f"projection is fitted on the warm items (ridge, λ={proj['lambda']} picked on "
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
    ]
