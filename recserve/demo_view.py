"""What `recserve demo` adds for the bundle's dataset: a default user who exists in it, and for
shops whose customers buy again (dataset.toml behaviour.repeat), the user's "buy again" items
beside new products.

    user = demo_user(bundle_dir, requested=None)   # the most active user of the training log
    show_buy_again(client, bundle_dir, user, k)
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from recserve.client import RecserveClient
from services.contract.bundle import Bundle


def _log(bundle_dir: Path, columns: list[str]):
    bundle = Bundle.manifest_of(bundle_dir)
    return pq.read_table(bundle.path("interactions.parquet"), columns=columns)


def demo_user(bundle_dir: Path, requested: str | None) -> str:
    """`requested`, else the user with the most events in the bundle's training log."""
    if requested:
        return requested
    users = _log(bundle_dir, ["user_id"]).column("user_id")
    counts = pc.value_counts(users).to_pylist()
    return str(max(counts, key=lambda c: (c["counts"], str(c["values"])))["values"])


def bought_items(bundle_dir: Path, user_id: str) -> set[str]:
    log = _log(bundle_dir, ["user_id", "item_id"])
    mine = log.filter(pc.equal(log.column("user_id"), user_id))
    return set(mine.column("item_id").to_pylist())


def show_buy_again(client: RecserveClient, bundle_dir: Path, user_id: str, k: int) -> None:
    """For a repeat-purchase dataset: which of the answer's items the user bought before (the
    default answer keeps them), then the best items the user never bought."""
    if not Bundle.manifest_of(bundle_dir).dataset.repeat:
        return
    bought = bought_items(bundle_dir, user_id)
    default = client.recommend(user_id, k)
    again = [item.item_id for item in default.items if item.item_id in bought]
    print(f"buy again ({len(again)} of the top {len(default.items)} were bought before by "
          f"user {user_id}): {', '.join(again) if again else '-'}")  # fmt: skip
    fresh = client.recommend(user_id, k, exclude_seen=True)
    print(
        f"new products for user {user_id} (never bought): "
        + ", ".join(f"{item.item_id} ({item.score:.3f})" for item in fresh.items)
    )
