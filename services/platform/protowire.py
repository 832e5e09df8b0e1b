"""Protobuf wire-format primitives, for the few answers recserve writes as bytes instead of
building message objects (services.platform.convert's float columns, services.gateway.wire's
RecommendedItems). https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

from typing import Any

import numpy as np

I64, LEN, I32 = 1, 2, 5  # wire types: 64-bit, length-delimited, 32-bit


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    return varint(field << 3 | wire_type)


def field_key(message: Any, name: str) -> bytes:
    """The key of a message class's length-delimited field (packed repeated scalars, strings,
    messages), by name."""
    return key(message.DESCRIPTOR.fields_by_name[name].number, LEN)


def len_field(field_key: bytes, payload: bytes) -> bytes:
    """A length-delimited field; an empty payload is left out, as protobuf writes "" and an
    empty packed column."""
    return field_key + varint(len(payload)) + payload if payload else b""


def packed_f32(field_key: bytes, values: np.ndarray) -> bytes:
    """A packed `repeated float`: its values' little-endian float32 bytes."""
    return len_field(field_key, np.asarray(values, dtype="<f4").tobytes())
