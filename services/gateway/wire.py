"""RecommendedItem messages written as protobuf wire bytes, without a message object per item.

A Recommend answer is k RecommendedItem messages. What is fixed per catalog row (item_id, title,
tags, price, currency) is encoded once, the first time the row is answered, and kept; what
changes per request (score, predicted_rating, stage_scores) is 32 bytes of fixed layout, written
for all k items at once by one numpy structured array. The answer's `items` field is then one
`bytes.join` (services.gateway.servicer sends it without building a RecommendResponse message).

Parsed back, the bytes equal the message protobuf would have built from the same values
(tests/services/test_gateway_response.py): the float fields are written even when 0 (proto3
omits them; a parser reads both the same), the rest as protobuf writes it (empty strings and an
absent price left out). Wire format: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import struct

import numpy as np

from services.platform.protowire import I32, I64, LEN, key, len_field, varint


def string_field(field: int, text: str) -> bytes:
    """A string field as protobuf writes it ("" is left out)."""
    return len_field(key(field, LEN), text.encode())


# The per-request part of a RecommendedItem: score (4), predicted_rating (5) and stage_scores (6:
# retrieval 1, ranking 2, rating 3, interaction 4), each float a key byte + 4 little-endian bytes.
_SCORES = np.dtype(
    [
        ("k_score", "u1"), ("score", "<f4"),
        ("k_rating", "u1"), ("rating", "<f4"),
        ("k_stage", "u1"), ("n_stage", "u1"),
        ("k_retrieval", "u1"), ("retrieval", "<f4"),
        ("k_ranking", "u1"), ("ranking", "<f4"),
        ("k_rating2", "u1"), ("rating2", "<f4"),
        ("k_interaction", "u1"), ("interaction", "<f4"),
    ]
)  # fmt: skip
SCORE_BYTES = _SCORES.itemsize  # 32
_STAGE_BYTES = 4 * 5
_KEYS = {  # each a one-byte key (field numbers below 16)
    "k_score": key(4, I32)[0],
    "k_rating": key(5, I32)[0],
    "k_stage": key(6, LEN)[0],
    "n_stage": _STAGE_BYTES,
    "k_retrieval": key(1, I32)[0],
    "k_ranking": key(2, I32)[0],
    "k_rating2": key(3, I32)[0],
    "k_interaction": key(4, I32)[0],
}
_PRICE_KEY = key(7, I64)  # RecommendedItem.price (optional double)


def _score_template(k: int) -> np.ndarray:
    out = np.zeros(k, dtype=_SCORES)
    for name, value in _KEYS.items():
        out[name] = value
    return out


class ItemWire:
    """The RecommendedItem bytes of one catalog's rows in one currency (GatewayCatalog.item_wire).

    `heads[row]`: the item's field key and length, then its fixed fields; filled on first use
    (a 1M-item catalog pays only for the rows it answers), by the event loop's thread; two
    threads filling one row write the same bytes."""

    def __init__(
        self,
        ids: np.ndarray,
        titles: np.ndarray,
        tags_by_row: np.ndarray,
        prices_by_row: np.ndarray,
        currency: str,
    ) -> None:
        self._ids, self._titles, self._tags = ids, titles, tags_by_row
        self._prices = prices_by_row
        self._currency = string_field(8, currency)
        self.heads = np.full(len(ids), None, dtype=object)
        self._template = _score_template(64)

    def _head(self, row: int) -> bytes:
        body = string_field(1, str(self._ids[row])) + string_field(2, str(self._titles[row]))
        body += b"".join(string_field(3, tag) for tag in self._tags[row])
        price = self._prices[row]
        if price is not None:
            body += _PRICE_KEY + struct.pack("<d", price) + self._currency
        head = key(1, LEN) + varint(len(body) + SCORE_BYTES) + body
        self.heads[row] = head
        return head

    def items(self, rows: np.ndarray, columns: np.ndarray) -> bytes:
        """RecommendResponse.items (field 1, repeated) for `rows`, in order: `columns` =
        float[5, k] (score, predicted_rating, retrieval, ranking (P(positive)), interaction);
        stage_scores.rating = predicted_rating."""
        k = rows.size
        if k == 0:
            return b""
        heads = self.heads[rows]
        missing = np.flatnonzero(heads == None)  # noqa: E711 (elementwise on an object array)
        for i in missing.tolist():  # first use of these rows only
            heads[i] = self._head(int(rows[i]))
        scores = self._template[:k].copy() if k <= self._template.size else _score_template(k)
        scores["score"], scores["rating"], scores["retrieval"] = columns[0], columns[1], columns[2]
        scores["ranking"], scores["rating2"], scores["interaction"] = (
            columns[3],
            columns[1],
            columns[4],
        )
        parts = np.empty(2 * k, dtype=object)
        parts[0::2] = heads
        parts[1::2] = scores.view(f"V{SCORE_BYTES}").tolist()
        return b"".join(parts.tolist())
