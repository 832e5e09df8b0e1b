"""services.gateway.wire: RecommendedItem bytes written per row and per request parse back to
the message protobuf builds from the same values (long and non-ASCII strings, many tags, prices
or none, zero scores, more items than the score template holds), and each row is encoded once."""

from __future__ import annotations

import numpy as np
import pytest

from recserve.v1 import gateway_pb2
from services.gateway.wire import SCORE_BYTES, ItemWire, string_field
from services.platform.protowire import varint


def _catalog(n: int = 300):
    rng = np.random.default_rng(7)
    ids = np.array(["", *(f"item-{i}" for i in range(1, n))], dtype=object)
    titles = np.array(
        ["", *(("Ünïcødé " * int(rng.integers(0, 40))) + str(i) for i in range(1, n))],
        dtype=object,
    )
    tags = np.empty(n, dtype=object)
    for i in range(n):
        tags[i] = tuple(f"tag{j}" for j in range(i % 7))
    prices = np.full(n, None, dtype=object)
    prices[1::3] = [float(p) for p in rng.uniform(0, 500, prices[1::3].size)]
    return ids, titles, tags, prices


def _message(ids, titles, tags, prices, currency, rows, columns) -> gateway_pb2.RecommendResponse:
    items = []
    for i, row in enumerate(rows.tolist()):
        score, rating, retrieval, ranking, interaction = columns[:, i].tolist()
        price = prices[row]
        items.append(
            gateway_pb2.RecommendedItem(
                item_id=ids[row],
                title=titles[row],
                tags=tags[row],
                score=score,
                predicted_rating=rating,
                stage_scores=gateway_pb2.StageScores(
                    retrieval=retrieval, ranking=ranking, rating=rating, interaction=interaction
                ),
                price=price,
                currency=currency if price is not None else "",
            )
        )
    return gateway_pb2.RecommendResponse(items=items)


@pytest.mark.parametrize("k", [0, 1, 20, 64, 65, 250])
@pytest.mark.parametrize("currency", ["", "EUR"])
def test_items_parse_to_the_message_protobuf_builds(k: int, currency: str) -> None:
    ids, titles, tags, prices = _catalog()
    wire = ItemWire(ids, titles, tags, prices, currency)
    rng = np.random.default_rng(k)
    rows = rng.choice(np.arange(1, len(ids)), size=k, replace=False)
    columns = rng.random((5, k)).astype(np.float32).astype(np.float64)
    columns[:, ::4] = 0.0  # zero floats: written by the wire, left out by protobuf
    got = gateway_pb2.RecommendResponse.FromString(wire.items(rows, columns))
    want = _message(ids, titles, tags, prices, currency, rows, columns)
    assert got == want
    assert [i.HasField("price") for i in got.items] == [prices[r] is not None for r in rows]
    # Twice the same rows: the second answer reuses the first one's row bytes.
    heads = wire.heads[rows].tolist()
    assert gateway_pb2.RecommendResponse.FromString(wire.items(rows, columns)) == want
    assert all(a is b for a, b in zip(wire.heads[rows].tolist(), heads, strict=True))


def test_rows_are_encoded_on_first_use_only() -> None:
    ids, titles, tags, prices = _catalog()
    wire = ItemWire(ids, titles, tags, prices, "USD")
    assert all(h is None for h in wire.heads)
    wire.items(np.array([5, 9]), np.zeros((5, 2)))
    assert [i for i, h in enumerate(wire.heads) if h is not None] == [5, 9]


def test_long_fields_get_multi_byte_lengths() -> None:
    assert varint(0) == b"\x00" and varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01" and varint(300) == b"\xac\x02"
    assert string_field(2, "") == b""
    title = "x" * 20_000  # a length of three varint bytes, in an item longer still
    ids = np.array(["", "a"], dtype=object)
    wire = ItemWire(ids, np.array(["", title], dtype=object), np.array([(), ()], dtype=object),
                    np.array([None, 2.5], dtype=object), "USD")  # fmt: skip
    columns = np.full((5, 1), 0.25)
    got = gateway_pb2.RecommendResponse.FromString(wire.items(np.array([1]), columns))
    (item,) = got.items
    assert item.title == title and item.price == 2.5 and item.currency == "USD"
    assert item.stage_scores.rating == item.predicted_rating == 0.25
    head = wire.heads[1]  # key, 3-byte length (of the fixed fields and the scores), fields
    assert head[1:4] == varint(len(head) - 4 + SCORE_BYTES)
