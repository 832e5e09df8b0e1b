"""`make eval DATA=instacart`: the next-basket evaluation of one dataset (training.evaluate.baskets)
-> reports/eval_<name>.json and eval_<name>.md.

    results = run_baskets(BasketEvalConfig(dataset="instacart"))

Systems on one split (each user's last basket is test): the baselines of
training.evaluate.basket_models (tuned on the last train basket), and ours: a bundle trained by
the pipeline on the train part only, asked in-process with the serving classes (retrieval
top-N -> ranker P(interact)), already-bought items allowed when the dataset says repeat = true.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data import InteractionData
from training.data.builtin import resolve
from training.data.dataset import load_dataset
from training.evaluate import basket_models as B
from training.evaluate.baskets import (
    K_NDCG,
    K_RECALL,
    BasketSplit,
    Relevant,
    basket_split,
    repeat_share,
    score_baskets,
)
from training.evaluate.report_peers import basket_peers_section, encoders_section

METRICS = (f"recall@{K_RECALL}", f"ndcg@{K_NDCG}", f"repeat_recall@{K_RECALL}",
           f"new_recall@{K_RECALL}")  # fmt: skip
GOAL = 0.10  # ours should beat the best baseline by this much on Recall@20 and NDCG@10


@dataclass(frozen=True)
class BasketEvalConfig:
    dataset: str = "instacart"  # a built-in name or a dataset folder
    data_dir: Path = Path("data")
    out_dir: Path = Path("reports")
    artifacts_dir: Path = Path("runs/eval/artifacts")
    tiny: bool = False
    ours: bool = True
    baselines: bool = True


def _log(msg: str) -> None:
    print(msg, flush=True)


def item_ids(data: InteractionData) -> list[str]:
    if len(data.items):
        return data.items["item_id"].astype(str).tolist()
    return sorted(set(data.events["item_id"].astype(str)))


def ours_lists(
    split: BasketSplit, data: InteractionData, cfg: BasketEvalConfig, users: list[str]
) -> tuple[dict[str, dict[str, list[str]]], dict[str, Any]]:
    """Train a bundle on split.train; its retrieval-alone and two-stage top-K lists."""
    from training.evaluate.ours import OurModel, train_bundle

    version = f"baskets-{data.source}"
    bundle_dir = train_bundle(split.train, data, cfg.artifacts_dir, version,
                              data_dir=cfg.data_dir, tiny=cfg.tiny, progress=False)  # fmt: skip
    ours = OurModel.load(bundle_dir, split.test)
    exclude = not data.config.repeat
    k = max(K_RECALL, K_NDCG)
    lists = {
        "ours_retrieval": ours.retrieve(users, k, exclude_seen=exclude),
        "ours_two_stage": ours.two_stage(users, k, exclude_seen=exclude),
    }
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    return lists, {"bundle": str(bundle_dir), "exclude_seen": exclude,
                   "training": manifest["training"]["config"]}  # fmt: skip


def run_baskets(cfg: BasketEvalConfig) -> dict[str, Any]:
    start = time.perf_counter()
    data = load_dataset(resolve(cfg.data_dir, cfg.dataset))
    split = basket_split(data.events)
    valid_rel, test_rel = Relevant.of(split.fit, split.valid), Relevant.of(split.train, split.test)
    _log(f"[baskets] {data.source}: {json.dumps(split.describe())}")
    lists: dict[str, dict[str, list[str]]] = {}
    info: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    if cfg.baselines:
        t = time.perf_counter()
        found, info = B.tune_and_score(split.fit, valid_rel, split.train, test_rel, item_ids(data),
                                       _log)  # fmt: skip
        lists.update(found)
        seconds["baselines"] = round(time.perf_counter() - t, 1)
    if cfg.ours:
        t = time.perf_counter()
        found, info["ours"] = ours_lists(split, data, cfg, test_rel.users)
        lists.update(found)
        seconds["ours"] = round(time.perf_counter() - t, 1)
    bought = split.train.groupby("user_id")["item_id"].agg(set).to_dict()
    systems = {
        name: {**score_baskets(rec, test_rel), "bought_share@20": repeat_share(rec, bought)}
        for name, rec in lists.items()
    }
    for name, row in systems.items():
        _log(f"[baskets] {name}: " + " ".join(f"{m} {row[m]:.4f}" for m in METRICS))
    seconds["total"] = round(time.perf_counter() - start, 1)
    return {
        "dataset": {
            "name": data.source,
            "sha256": data.sha256,
            "n_events": data.n_events,
            "repeat": data.config.repeat,
        },
        "split": {
            **split.describe(),
            "test_repeat_share": test_rel.repeat_share(),
            "valid_repeat_share": valid_rel.repeat_share(),
        },
        "systems": systems,
        "baselines": {k: v for k, v in info.items() if k != "ours"},
        "ours": info.get("ours"),
        "goal": _goal(systems),
        "tiny": cfg.tiny,
        "command": "python -m training.evaluate " + shlex.join(sys.argv[1:]),
        "seconds": seconds,
    }


def _goal(systems: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """Ours (two-stage) against the best baseline on each headline metric."""
    ours = systems.get("ours_two_stage")
    base = {n: s for n, s in systems.items() if not n.startswith("ours")}
    if ours is None or not base:
        return None
    out: dict[str, Any] = {"target_lift": GOAL}
    for metric in (f"recall@{K_RECALL}", f"ndcg@{K_NDCG}"):
        best = max(base, key=lambda n: base[n][metric])
        lift = ours[metric] / base[best][metric] - 1.0
        out[metric] = {"best_baseline": best, "baseline": base[best][metric],
                       "ours": ours[metric], "lift": lift, "met": lift >= GOAL}  # fmt: skip
    return out


NAMES = {**B.LABELS, "ours_retrieval": "ours: retrieval alone",
         "ours_two_stage": "ours: retrieval → ranking"}  # fmt: skip


def write_basket_report(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = results["dataset"]["name"]
    (out_dir / f"eval_{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    sp = results["split"]
    lines = [
        f"# Next-basket evaluation — {name}",
        "",
        f"Generated by `make eval DATA={name}` (`{results['command']}`); do not edit by hand. "
        f"Data {name} (sha256 {results['dataset']['sha256'][:12]}…), "
        f"{results['dataset']['n_events']:,} events. Took {results['seconds']['total']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results['seconds'].items() if k != 'total')})"
        + (" — TINY preset (smoke test)." if results["tiny"] else "."),
        "",
        f"**Split**: per user, baskets by {sp['basket']}; each user's last basket is test "
        f"({sp['n_test_users']} users, {sp['n_test']:,} lines), the rest train "
        f"({sp['n_train']:,} lines). Baselines are tuned on the last train basket per user "
        f"(fit {sp['n_fit']:,} lines → valid {sp['n_valid']:,}); the best setting is refit "
        "on train. Relevant: the test basket's distinct items. Full ranking over the catalog, "
        "already-bought items allowed. Repeat recall: Recall@20 over the test items the user "
        "bought before; new recall: over the others "
        f"({sp['test_repeat_share']:.1%} of test items are repeats).",
        "",
        "| system | recall@20 | ndcg@10 | repeat recall@20 | new recall@20 | bought share@20 "
        "| tuned |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in results["systems"].items():
        params = results["baselines"].get(key, {}).get("params")
        tuned = json.dumps(params) if params else ("—" if params is not None else "see below")
        lines.append(f"| {NAMES.get(key, key)} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS)
                     + f" | {row['bought_share@20']:.3f} | {tuned} |")  # fmt: skip
    goal = results.get("goal")
    if goal:
        lines += ["", f"Goal: ours (two-stage) ≥ best baseline + {goal['target_lift']:.0%}."]
        for metric in (f"recall@{K_RECALL}", f"ndcg@{K_NDCG}"):
            g = goal[metric]
            lines.append(f"- {metric}: ours {g['ours']:.4f} vs {NAMES[g['best_baseline']]} "
                         f"{g['baseline']:.4f}: {g['lift']:+.1%} "
                         f"({'met' if g['met'] else 'not met'})")  # fmt: skip
    if results.get("ours"):
        t = results["ours"]["training"]
        keys = ("history_len", "retrieval_epochs", "ranker_epochs", "ranker_hard_negatives",
                "hard_negative_pool", "embedding_dim")  # fmt: skip
        lines += ["", "Ours: the bundle the pipeline trains on train (build_bundle_from_events), "
                  "scored in-process with the serving classes (Retriever top-200 → OnnxRanker "
                  f"P(interact)), exclude_seen={results['ours']['exclude_seen']}. Training: "
                  + ", ".join(f"{k}={t.get(k)}" for k in keys) + "."]  # fmt: skip
    lines += ["", "bought share@20: share of the top-20 slots holding an item the user bought "
              "before. Hyper-parameters picked on validation by ndcg@10; the tuning grids and "
              f"validation scores are in eval_{name}.json."]  # fmt: skip
    peers = out_dir / f"external_baselines_{name}.json"
    lines += basket_peers_section(peers, results["systems"])
    lines += encoders_section(out_dir / f"encoders_{name}.json", peers, results["systems"])
    path = out_dir / f"eval_{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path
