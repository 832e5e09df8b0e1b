"""Malformed and oversized bytes on the wire, sent to every recserve.v1 method of every server.

Bytes that do not decode as the method's request message must answer INVALID_ARGUMENT (the
error interceptor turns grpc.aio's default, INTERNAL "Exception deserializing request", into a
client error); a message over RECSERVE_MAX_MESSAGE_BYTES is refused by gRPC itself with
RESOURCE_EXHAUSTED before any recserve code runs."""

from __future__ import annotations

from collections.abc import Iterator

import fuzzlib as fz
import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recserve.v1 import feature_pb2, gateway_pb2, ranking_pb2, retrieval_pb2, uservalue_pb2

pytestmark = pytest.mark.timeout(600)

METHODS = {
    "gateway": ("recserve.v1.Gateway", gateway_pb2, "Gateway"),
    "feature": ("recserve.v1.FeatureService", feature_pb2, "FeatureService"),
    "retrieval": ("recserve.v1.RetrievalService", retrieval_pb2, "RetrievalService"),
    "ranking": ("recserve.v1.RankingService", ranking_pb2, "RankingService"),
    "uservalue": ("recserve.v1.UserValueService", uservalue_pb2, "UserValueService"),
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _methods():
    for server, (full_name, module, short) in METHODS.items():
        service = module.DESCRIPTOR.services_by_name[short]
        assert service.full_name == full_name
        for m in service.methods:
            yield server, f"/{full_name}/{m.name}", m.input_type


def _method_paths() -> list[tuple[str, str]]:
    """(server, "/package.Service/Method") for every RPC in the protos."""
    return [(server, path) for server, path, _ in _methods()]


def _invalid_utf8(message) -> bytes | None:
    """Length-delimited bytes that never decode (invalid UTF-8 in a string, or in a nested
    message where they are a broken tag) in the request's first string or message field
    (field 1 in most requests), or None when it has neither (ListAddedItems: int64 only)."""
    delimited = [f.number for f in message.fields if f.type in (f.TYPE_STRING, f.TYPE_MESSAGE)]
    if not delimited:
        return None
    return _varint(min(delimited) << 3 | 2) + b"\x02\xff\xfe"


PATHS = _method_paths()
UTF8_PAYLOADS = {path: _invalid_utf8(message) for _, path, message in _methods()}
INVALID_UTF8 = "utf8"  # stands for the method's own UTF8_PAYLOADS entry
# Field 1 claims 100 bytes but the message ends: a truncated message.
TRUNCATED = b"\x0a\x64abc"
# A varint that never ends.
BAD_VARINT = b"\x10" + b"\xff" * 11


@pytest.fixture(scope="module")
def channels(stack) -> Iterator[dict[str, grpc.Channel]]:
    opened = {name: grpc.insecure_channel(target) for name, target in stack.targets.items()}
    yield opened
    for channel in opened.values():
        channel.close()


def raw(channels: dict[str, grpc.Channel], server: str, path: str):
    """A unary-unary callable that sends and returns bytes as they are (no (de)serializer)."""
    return channels[server].unary_unary(path, request_serializer=None, response_deserializer=None)


@pytest.fixture(scope="module")
def baseline(channels) -> dict[str, int]:
    for server, path in PATHS:
        fz.status_of(raw(channels, server, path), b"")  # every method once: lazy set-up done
    return fz.process_resources()


@pytest.mark.parametrize(("server", "path"), PATHS, ids=[p for _, p in PATHS])
@pytest.mark.parametrize(
    "payload", [INVALID_UTF8, TRUNCATED, BAD_VARINT], ids=["utf8", "trunc", "varint"]
)
def test_undecodable_bytes_are_invalid_argument(channels, baseline, server, path, payload):
    if payload == INVALID_UTF8:
        payload = UTF8_PAYLOADS[path]
        if payload is None:
            pytest.skip("no string or message field (truncated and varint payloads still cover it)")
    code, _, details = fz.status_of(raw(channels, server, path), payload)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, details)


@pytest.mark.parametrize(("server", "path"), PATHS, ids=[p for _, p in PATHS])
def test_oversized_message_is_resource_exhausted(channels, baseline, server, path):
    payload = b"\x0a" + _varint(fz.MAX_MESSAGE_BYTES) + b"u" * fz.MAX_MESSAGE_BYTES
    code, _, details = fz.status_of(raw(channels, server, path), payload)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)


@given(path=st.sampled_from(PATHS), payload=st.binary(max_size=256))
@fz.FUZZ
def test_random_bytes_never_internal(channels, baseline, path, payload):
    server, method = path
    fz.assert_clean(raw(channels, server, method), payload)


def test_zz_still_serves_and_no_leak(channels, baseline, stack):
    request = gateway_pb2.RecommendRequest(user_id="1", k=3).SerializeToString()
    reply = raw(channels, "gateway", "/recserve.v1.Gateway/Recommend")(request, timeout=20)
    assert len(gateway_pb2.RecommendResponse.FromString(reply).items) == 3
    fz.assert_no_leak(baseline, fz.process_resources())
