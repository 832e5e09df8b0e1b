"""What `recserve data check` prints about a valid dataset: counts, time range, event types,
sparsity, repeats, ratings, money, items without metadata and the declared attributes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.data.schema import InteractionData


def _iso(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat().replace("+00:00", "Z")


def summarize(data: InteractionData) -> dict[str, Any]:
    """JSON-ready facts about `data` (nothing here is estimated: all counts are exact)."""
    ev = data.events
    cfg = data.config
    n_users = int(ev["user_id"].nunique())
    catalog = set(data.items["item_id"]) if len(data.items) else set(ev["item_id"].unique())
    n_items = len(catalog)
    pairs = ev[["user_id", "item_id"]].drop_duplicates()
    types = ev["event_type"].replace("", "(none)").value_counts()
    out: dict[str, Any] = {
        "name": cfg.name or data.source,
        "events": len(ev),
        "users": n_users,
        "items": n_items,
        "items_without_events": len(catalog - set(ev["item_id"].unique())),
        "time_range": [_iso(ev["timestamp"].min()), _iso(ev["timestamp"].max())],
        "days": round(float(ev["timestamp"].max() - ev["timestamp"].min()) / 86_400, 1),
        "event_types": {str(k): int(v) for k, v in types.items()},
        "density": float(len(pairs) / max(1, n_users * n_items)),
        "repeat_share": float(1.0 - len(pairs) / max(1, len(ev))),
        "events_per_user": _quantiles(ev.groupby("user_id").size()),
        "repeat_recommendations": cfg.repeat,
    }
    if data.has_ratings:
        rated = ev["rating"].dropna()
        out["ratings"] = {
            "count": len(rated),
            "scale": [cfg.ratings.low, cfg.ratings.high],
            "mean": float(rated.mean()),
            "positive_at": cfg.ratings.like_threshold,
        }
    if data.has_money:
        paid = ev["value"][ev["value"] > 0]
        out["money"] = {
            "currency": cfg.currency,
            "events_with_money": len(paid),
            "total": float(paid.sum()),
        }
    if len(data.items):
        out["items_without_metadata"] = int(_bare_items(data.items).sum())
        out["tags"] = len({t for row in data.items.get("tags", []) for t in row})
    out["attributes"] = {
        side: {name: _coverage(table, name) for name in (spec.categorical + spec.numeric)}
        for side, table, spec in (
            ("items", data.items, cfg.items),
            ("users", data.users, cfg.users),
        )
    }
    return out


def _bare_items(items: pd.DataFrame) -> np.ndarray:
    """Items with neither a title, a description nor a tag."""
    bare = np.ones(len(items), dtype=bool)
    for text in ("title", "description"):
        if text in items:
            bare &= items[text].fillna("").astype(str).to_numpy() == ""
    if "tags" in items:
        bare &= np.asarray([len(t) == 0 for t in items["tags"]])
    return bare


def _coverage(table: pd.DataFrame, name: str) -> dict[str, Any]:
    column = table[name]
    present = column.notna() & (column.astype(str) != "")
    return {"filled": float(present.mean()) if len(column) else 0.0,
            "distinct": int(column[present].nunique())}  # fmt: skip


def _quantiles(counts: pd.Series) -> dict[str, float]:
    q = counts.quantile([0.0, 0.5, 0.9, 1.0]).to_numpy()
    return {"min": float(q[0]), "median": float(q[1]), "p90": float(q[2]), "max": float(q[3])}


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"dataset {s['name']}: valid",
        f"  events {s['events']:,}  users {s['users']:,}  items {s['items']:,}"
        f"  (items without events {s['items_without_events']:,})",
        f"  time {s['time_range'][0]} .. {s['time_range'][1]} ({s['days']} days)",
        "  event types " + ", ".join(f"{k} {v:,}" for k, v in s["event_types"].items()),
        f"  density {s['density']:.5f}  repeat share {s['repeat_share']:.3f}"
        f"  events per user median {s['events_per_user']['median']:g}"
        f" (p90 {s['events_per_user']['p90']:g}, max {s['events_per_user']['max']:g})",
        "  already-seen items may be recommended again: "
        + ("yes" if s["repeat_recommendations"] else "no"),
    ]
    if "ratings" in s:
        r = s["ratings"]
        lines.append(f"  ratings {r['count']:,} on {r['scale'][0]:g}..{r['scale'][1]:g}"
                     f" (mean {r['mean']:.2f}; liked at >= {r['positive_at']:g})")  # fmt: skip
    else:
        lines.append("  ratings: none (no rating model; PredictRatings will refuse)")
    if "money" in s:
        m = s["money"]
        lines.append(f"  money {m['total']:,.2f} {m['currency']} over {m['events_with_money']:,}"
                     " events (user value in money)")  # fmt: skip
    else:
        lines.append("  money: none (user value predicts engagement: future interactions)")
    if "items_without_metadata" in s:
        lines.append(f"  items without title, description or tags: {s['items_without_metadata']:,}"
                     f"; distinct tags {s['tags']:,}")  # fmt: skip
    else:
        lines.append("  items: no items file (ids only; no text, tags or attributes)")
    for side, attrs in s["attributes"].items():
        for name, cov in attrs.items():
            lines.append(
                f"  {side}.{name}: {cov['filled']:.0%} filled, {cov['distinct']:,} distinct"
            )
    return "\n".join(lines)
