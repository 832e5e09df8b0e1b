"""The external peers (reports/external_baselines*.json, `make eval-external`) beside our own
systems and references, on the same split: one short table for eval.md (MovieLens top-K) and
one for eval_<name>.md (next basket)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SEQUENTIAL = ("SASRec", "GRU4Rec")
HEADLINE = ("recall@20", "ndcg@10")


def _metric(row: Mapping[str, Any], name: str) -> float | None:
    """recall@20 / ndcg@10 under either spelling (the external file writes recall_at_20)."""
    for key in (name, name.replace("@", "_at_")):
        if isinstance(row.get(key), int | float):
            return float(row[key])
    return None


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def load_entries(path: Path) -> list[dict[str, Any]]:
    """The external file's top-K / next-basket entries (rating-only entries left out)."""
    if not Path(path).is_file():
        return []
    entries = json.loads(Path(path).read_text())
    return [e for e in entries if _metric(e.get("metrics", {}), "ndcg@10") is not None]


def peers_table(
    entries: list[dict[str, Any]], ours: Mapping[str, tuple[str, Mapping[str, Any]]]
) -> list[str]:
    """ours: key -> (label, metrics) of this report's own systems; then every external entry,
    sequential models marked. -> markdown table lines."""
    lines = [
        "| system | kind | recall@20 | ndcg@10 | valid ndcg@10 | tuned | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in ours.values():
        cells = " | ".join(_f(_metric(row, m)) for m in HEADLINE)
        lines.append(f"| {label} | this report | {cells} | – | – | – |")
    for e in entries:
        kind = "sequential" if e.get("model") in SEQUENTIAL else "non-sequential"
        params = {k: v for k, v in (e.get("params") or {}).items()
                  if k not in ("training", "MAX_ITEM_LIST_LENGTH", "budget")}  # fmt: skip
        valid = _metric(e.get("valid") or {}, "ndcg@10")
        kind += _stopped(e)
        lines.append(
            f"| {e.get('library', '')} {e.get('version', '')} {e.get('model', '')} | {kind} | "
            + " | ".join(_f(_metric(e["metrics"], m)) for m in HEADLINE)
            + f" | {_f(valid)} | `{json.dumps(params)}` | {e.get('seconds', '–')} |"
        )
    return lines


def _stopped(entry: Mapping[str, Any]) -> str:
    """For a sequential entry: the chosen config's best validation epoch and how many it ran
    (equal: training stopped at its epoch/time cap while still improving)."""
    epochs = (entry.get("params") or {}).get("epochs")
    for run in entry.get("tuning") or []:
        curve = run.get("valid_curve")
        if (
            curve
            and run.get("params", {}).get("epochs") == epochs
            and run.get("valid") == entry.get("valid")
        ):
            return f" (best epoch {epochs} of {len(curve)} run)"
    return ""


def movielens_peers_section(path: Path, systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """eval.md: SASRec / GRU4Rec beside implicit ALS, EASE, LightGCN and ours."""
    entries = load_entries(path)
    if not any(e.get("model") in SEQUENTIAL for e in entries):
        return []
    labels = {"implicit_als": "implicit ALS MF (ref)", "ease": "EASE (ref)",
              "two_stage": "ours: retrieval → ranking"}  # fmt: skip
    ours = {k: (v, systems[k]) for k, v in labels.items() if k in systems}
    return [
        "### Sequential peers beside ALS, EASE and LightGCN (same top-K split)",
        "",
        *peers_table(entries, ours),
        "",
        _SEQ_NOTE,
        "",
    ]


def basket_peers_section(path: Path, systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """eval_<name>.md: the external entries of external_baselines_<name>.json."""
    entries = load_entries(path)
    if not entries:
        return []
    labels = {
        "user_frequency": "user's own most frequent items",
        "ease": "EASE",
        "implicit_als": "implicit ALS MF",
        "ours_two_stage": "ours: retrieval → ranking",
    }
    ours = {k: (v, systems[k]) for k, v in labels.items() if k in systems}
    command = entries[-1].get("command", "")
    return [
        "",
        f"## External libraries on the same split (`make eval-external`, `{command}`)",
        "",
        f"From `{Path(path).name}`: the same basket split, relevant sets and metrics as the table "
        "above (training.evaluate.baskets), full ranking over the catalog with bought items "
        "allowed; each library tuned fit → valid by ndcg@10, refit on train.",
        "",
        *peers_table(entries, ours),
        "",
        _SEQ_NOTE,
    ]


# The best peer of a dataset: the peers (ALS, EASE, LightGCN, SASRec, GRU4Rec) plus, on
# a basket dataset, the user's own most frequent items.
REFERENCE_PEERS = ("implicit_als", "ease", "user_frequency")
_ENCODER_PARTS = {"user_seq_time": "time gaps", "user_seq_kinds": "event kinds"}


def encoder_label(variant: str) -> str:
    """training.evaluate.encoders variant -> a row label: "transformer+user_seq_time=1" ->
    "transformer + time gaps"; other overrides are shown as given."""
    encoder, *pairs = variant.split("+")
    parts = [encoder]
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in _ENCODER_PARTS:
            if value not in ("0", "false", "False"):
                parts.append(_ENCODER_PARTS[key])
        else:
            parts.append(pair)
    return " + ".join(parts)


def best_peer(
    entries: list[dict[str, Any]], systems: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[str, float]]:
    """metric -> (peer, value): the best of the external entries (ALS, LightGCN, SASRec, ...)
    and this report's REFERENCE_PEERS, per headline metric."""
    rows = [(f"{e.get('library', '')} {e.get('model', '')}".strip(), e["metrics"]) for e in entries]
    rows += [(k, systems[k]) for k in REFERENCE_PEERS if k in systems]
    best: dict[str, tuple[str, float]] = {}
    for name, row in rows:
        for metric in HEADLINE:
            value = _metric(row, metric)
            if value is not None and value > best.get(metric, ("", -1.0))[1]:
                best[metric] = (name, value)
    return best


def encoders_section(
    path: Path, peers_path: Path, systems: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The user-encoder ablation (reports/encoders_<data>.json, `python -m training.evaluate.
    encoders`): each variant's served retrieval and two-stage metrics, and its two-stage lead
    over the best peer on the same split."""
    if not Path(path).is_file():
        return []
    results = json.loads(Path(path).read_text())
    best = best_peer(load_entries(peers_path), systems)
    lines = [
        "",
        f"### User encoders and their ablation (`{results.get('command', '')}`)",
        "",
        f"From `{Path(path).name}`: one bundle per variant, trained on this split's train events "
        "and asked through the served path (user tower ONNX + FAISS, then the ranker's "
        "P(interact) over the top 200), each user at the time of their first test event. "
        "Lead: two-stage over the best peer ("
        + ", ".join(f"{m} {name} {value:.4f}" for m, (name, value) in best.items())
        + ").",
        "",
        "| user encoder | retrieval recall@20 | retrieval ndcg@10 | two-stage recall@20 | "
        "two-stage ndcg@10 | lead recall@20 | lead ndcg@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in results.get("systems", {}).items():
        cells = [_f(_metric(row.get(part, {}), m)) for part in ("retrieval", "two_stage")
                 for m in HEADLINE]  # fmt: skip
        leads = []
        for m in HEADLINE:
            value = _metric(row.get("two_stage", {}), m)
            leads.append("–" if value is None or m not in best else
                         f"{100 * (value / best[m][1] - 1):+.1f}%")  # fmt: skip
        lines.append(f"| {encoder_label(variant)} | " + " | ".join(cells + leads) + " |")
    return lines


_SEQ_NOTE = (
    "SASRec and GRU4Rec: RecBole 1.2.1 models, cross-entropy over all items, input = the "
    "user's last 50 training items in time order (fit for validation, train for test), "
    "early-stopped on the validation split, then refit on train for the chosen epoch count; "
    "trained with an all-position CE loop over 50-item windows (training/external/baselines.py, "
    "_seq_train) instead of RecBole's one-prefix-per-row Trainer, which is ~50x slower on CPU. "
    "Each grid point is capped in epochs and seconds (SEQ_BUDGETS, a 2-core CPU): 'best epoch "
    "N of N run' means the cap stopped a model that was still improving on validation."
)
