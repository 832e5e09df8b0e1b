"""How the `recserve` commands print replies: aligned tables, one line per note, or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from recserve.v1 import common_pb2, gateway_pb2
from services.contract.bundle import ENGAGEMENT_UNIT


def print_json(message: Message) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    rows_ = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(line.format(*row).rstrip() for row in rows_)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def items_table(items: Sequence[gateway_pb2.RecommendedItem]) -> str:
    """#, item, title, tags, score and, when the answer has them, predicted ratings (similar
    items and unranked answers have none: no empty column) and prices with their currency."""
    rated = any(it.predicted_rating for it in items)
    priced = any(it.HasField("price") for it in items)
    headers = ("#", "item", "title", "tags", "score", *(("rating",) if rated else ()),
               *(("price",) if priced else ()))  # fmt: skip
    rows = [
        (n, it.item_id, clip(it.title, 44), clip(", ".join(it.tags), 32), f"{it.score:.4f}",
         *((f"{it.predicted_rating:.2f}" if it.predicted_rating else "-",) if rated else ()),
         *((f"{it.price:.2f} {it.currency}" if it.HasField("price") else "-",) if priced else ()))
        for n, it in enumerate(items, 1)
    ]  # fmt: skip
    return table(headers, rows)


def amount(value: common_pb2.UserValue) -> str:
    """expected_value with its unit: money in the dataset's currency, or interactions."""
    return f"{value.expected_value:.2f} {value.unit or '(no unit)'}"


def value_line(value: common_pb2.UserValue) -> str:
    segment = common_pb2.Segment.Name(value.segment).removeprefix("SEGMENT_")
    engagement = value.unit == ENGAGEMENT_UNIT
    counted = "active days" if engagement else "transactions"
    worth = "expected engagement" if engagement else "expected value"
    return (
        f"user {value.user_id}: segment {segment}, P(active in {value.horizon_weeks:g} weeks) "
        f"{value.p_active:.2f}, expected {counted} {value.expected_transactions:.2f}, "
        f"{worth} {amount(value)}"
    )


def print_recommendations(reply: gateway_pb2.RecommendResponse, header: str) -> None:
    print(header)
    print(items_table(reply.items))
    notes = [f"model {reply.model_version}"]
    if reply.cold_start:
        notes.append("cold start: popular items")
    if reply.fallbacks:
        notes.append(f"fallbacks: {', '.join(reply.fallbacks)}")
    print("  ".join(notes))
    if reply.HasField("user_value"):
        print(value_line(reply.user_value))
