"""`recserve add-items FILE`: new items from a JSON-lines file into the gateway's AddItems.

One object per line: {"item_id": ..., "title": ..., "tags": [...], "description": ...,
"embedding": [floats]} (all but item_id optional; blank lines skipped). Sent in batches
(--batch, default 500; the gateway takes at most RECSERVE_MAX_BATCH per call). Every line is
parsed before the first call, so a bad file sends nothing; batches are idempotent by id, so a
run that failed half-way is simply run again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from recserve.display import print_json
from recserve.v1 import common_pb2

DEFAULT_BATCH = 500
_FIELDS = {"item_id", "title", "tags", "description", "embedding"}


def read_items(path: Path) -> list[common_pb2.NewItem]:
    """Parse the whole file; ValueError naming the line for anything malformed."""
    items = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                items.append(_item(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def _item(obj: object) -> common_pb2.NewItem:
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} (expected {sorted(_FIELDS)})")
    if not isinstance(obj.get("item_id"), str) or not obj["item_id"]:
        raise ValueError("item_id must be a non-empty string")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags must be a list of strings")
    item = common_pb2.NewItem(
        item_id=obj["item_id"],
        title=str(obj.get("title", "")),
        tags=tags,
        description=str(obj.get("description", "")),
    )
    embedding = obj.get("embedding")
    if embedding is not None:
        if not isinstance(embedding, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in embedding
        ):
            raise ValueError("embedding must be a list of numbers")
        item.embedding.extend(float(v) for v in embedding)
    return item


def batches(items: Sequence[common_pb2.NewItem], size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def cmd_add_items(client, args: argparse.Namespace) -> None:
    """Send every batch; stops at the first error (main() prints its status)."""
    if args.batch < 1:
        raise ValueError("--batch must be at least 1")
    items = read_items(Path(args.file))
    added = known = 0
    for batch in batches(items, args.batch):
        reply = client.add_items(batch)
        if args.json:
            print_json(reply)
        added += sum(1 for m in reply.items if m.row > 0)
        known += sum(1 for m in reply.items if m.row == 0)
    if not args.json:
        print(f"added {added} item(s); {known} already in the bundle ({len(items)} lines)")


def add_parser(client_cmd) -> None:
    p = client_cmd("add-items", cmd_add_items, "add new items (JSON lines) to the catalog")
    p.add_argument("file", metavar="FILE", help="JSON lines: item_id, title, tags, ...")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="items per AddItems call")
