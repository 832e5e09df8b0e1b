"""services.platform.security: settings validation, TLS / mutual TLS, API-key interceptor, the
open health check, rejection logging, and the TLS-capable health probe (real grpc.aio servers on
127.0.0.1, port 0, with a throwaway PKI)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recserve.v1 import feature_pb2, feature_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from services.contract.errors import ConfigError
from services.platform import healthcheck
from services.platform.security import (
    ClientTLS,
    SecuritySettings,
    aio_channel,
    key_matches,
    presented_key,
)
from services.platform.server import create_server


def _load_pki():
    path = Path(__file__).resolve().parents[1] / "pki.py"
    spec = importlib.util.spec_from_file_location("recserve_test_pki", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GATEWAY = "recserve.v1.Gateway"
FEATURE = "recserve.v1.FeatureService"
CLIENT_KEY = "client-key-0123456789abcdef"
OLD_CLIENT_KEY = "client-key-old-0123456789"
INTERNAL_KEY = "internal-key-0123456789abcdef"
AUTH_ENV = {"RECSERVE_API_KEYS": f"{CLIENT_KEY},{OLD_CLIENT_KEY}",
            "RECSERVE_INTERNAL_API_KEYS": INTERNAL_KEY}  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return _load_pki().make_pki(tmp_path_factory.mktemp("pki"))


class StandInGateway(gateway_pb2_grpc.GatewayServicer):
    async def Recommend(self, request, context):
        return gateway_pb2.RecommendResponse(model_version=f"for {request.user_id}")


class StandInFeature(feature_pb2_grpc.FeatureServiceServicer):
    async def ApplyEvents(self, request, context):
        return feature_pb2.ApplyEventsResponse(accepted=len(request.events))


def _register(server: grpc.aio.Server) -> None:
    gateway_pb2_grpc.add_GatewayServicer_to_server(StandInGateway(), server)
    feature_pb2_grpc.add_FeatureServiceServicer_to_server(StandInFeature(), server)


@contextlib.asynccontextmanager
async def serving(security: SecuritySettings):
    server, port = await create_server(
        _register, port=0, service_names=[GATEWAY, FEATURE], security=security
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _metadata(key: str | None, header: str = "authorization"):
    if key is None:
        return None
    return ((header, f"Bearer {key}" if header == "authorization" else key),)


async def _recommend(channel, key: str | None = None, header: str = "authorization") -> str:
    stub = gateway_pb2_grpc.GatewayStub(channel)
    request = gateway_pb2.RecommendRequest(user_id="196", k=3)
    reply = await stub.Recommend(request, timeout=5, metadata=_metadata(key, header))
    return reply.model_version


async def _apply(channel, key: str | None = None) -> int:
    stub = feature_pb2_grpc.FeatureServiceStub(channel)
    reply = await stub.ApplyEvents(
        feature_pb2.ApplyEventsRequest(), timeout=5, metadata=_metadata(key)
    )
    return reply.accepted


async def _health(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status


async def _status(coro) -> grpc.StatusCode:
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _tls_env(pki, mutual: bool = False) -> dict[str, str]:
    env = {"RECSERVE_TLS_CERT": str(pki.server_cert), "RECSERVE_TLS_KEY": str(pki.server_key)}
    if mutual:
        env["RECSERVE_TLS_CLIENT_CA"] = str(pki.ca)
    return env


# --- settings -----------------------------------------------------------------------------------


def test_everything_is_off_by_default():
    settings = SecuritySettings.from_env({})
    assert settings == SecuritySettings()
    assert settings.server_tls is None and settings.client_tls is None
    assert not settings.auth_enabled and settings.auth_interceptor() is None
    assert settings.describe() == "tls=off auth=off"


def test_tls_and_key_settings_are_read(pki, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2024-05\n{INTERNAL_KEY}\n\ninternal-key-next-0123456789\n")
    env = {
        **_tls_env(pki, mutual=True),
        "RECSERVE_TLS_CA": str(pki.ca),
        "RECSERVE_TLS_CLIENT_CERT": str(pki.client_cert),
        "RECSERVE_TLS_CLIENT_KEY": str(pki.client_key),
        "RECSERVE_TLS_SERVER_NAME": "localhost",
        "RECSERVE_API_KEYS": f" {CLIENT_KEY} , {OLD_CLIENT_KEY}",
        "RECSERVE_INTERNAL_API_KEYS_FILE": str(key_file),
        "RECSERVE_INTERNAL_API_KEY": INTERNAL_KEY,
    }
    settings = SecuritySettings.from_env(env)
    assert settings.server_tls is not None and settings.server_tls.mutual
    assert settings.server_tls.certificate_chain == pki.server_cert.read_bytes()
    assert settings.client_tls.root_certificates == pki.ca.read_bytes()
    assert settings.client_tls.options() == [("grpc.ssl_target_name_override", "localhost")]
    assert len(settings.client_key_digests) == 2 and len(settings.internal_key_digests) == 2
    assert key_matches("internal-key-next-0123456789", settings.internal_key_digests)
    assert settings.outgoing_key == INTERNAL_KEY
    assert settings.describe() == "tls=mtls auth=on"
    text = repr(settings)
    assert CLIENT_KEY not in text and INTERNAL_KEY not in text and "BEGIN" not in text


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RECSERVE_TLS_CERT": "/nonexistent/cert.pem", "RECSERVE_TLS_KEY": "/x"}, "TLS_CERT"),
        ({"RECSERVE_TLS_CA": "/nonexistent/ca.pem"}, "RECSERVE_TLS_CA"),
        ({"RECSERVE_API_KEYS_FILE": "/nonexistent/keys"}, "RECSERVE_API_KEYS_FILE"),
        ({"RECSERVE_API_KEYS": "short"}, "at least 16"),
        ({"RECSERVE_API_KEYS": "has a space in it 0123456"}, "visible ASCII"),
        ({"RECSERVE_INTERNAL_API_KEY": f"{INTERNAL_KEY},{CLIENT_KEY}"}, "exactly one"),
    ],
)
def test_bad_settings_fail_at_start_up(env, match):
    with pytest.raises(ConfigError, match=match):
        SecuritySettings.from_env(env)


def test_incomplete_tls_pairs_fail(pki, tmp_path):
    with pytest.raises(ConfigError, match="together"):
        SecuritySettings.from_env({"RECSERVE_TLS_CERT": str(pki.server_cert)})
    with pytest.raises(ConfigError, match="needs RECSERVE_TLS_CERT"):
        SecuritySettings.from_env({"RECSERVE_TLS_CLIENT_CA": str(pki.ca)})
    with pytest.raises(ConfigError, match="together"):
        SecuritySettings.from_env({"RECSERVE_TLS_CLIENT_CERT": str(pki.client_cert)})
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM"):
        SecuritySettings.from_env({"RECSERVE_TLS_CA": str(not_pem)})


def test_a_configured_key_is_never_in_the_error_message():
    with pytest.raises(ConfigError) as info:
        SecuritySettings.from_env({"RECSERVE_API_KEYS": "secret-but-has space-0123"})
    assert "secret" not in str(info.value)


def test_server_refuses_to_start_without_the_keys_its_services_need():
    only_client_keys = SecuritySettings.from_env({"RECSERVE_API_KEYS": CLIENT_KEY})

    async def scenario():
        await create_server(_register, port=0, service_names=[FEATURE], security=only_client_keys)

    with pytest.raises(ConfigError, match="RECSERVE_INTERNAL_API_KEYS"):
        asyncio.run(scenario())


def test_presented_key_reads_bearer_and_x_api_key():
    assert presented_key((("authorization", "Bearer abc"),)) == "abc"
    assert presented_key((("authorization", "bearer  abc "),)) == "abc"
    assert presented_key((("x-api-key", "xyz"),)) == "xyz"
    assert presented_key((("authorization", "Basic abc"),)) is None
    assert presented_key((("user-agent", "grpc"),)) is None
    assert presented_key(None) is None


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_server_answers_a_tls_client_and_refuses_plaintext(pki):
    security = SecuritySettings.from_env(_tls_env(pki))

    async def scenario():
        async with serving(security) as target:
            async with aio_channel(target, tls=ClientTLS.from_files(ca=str(pki.ca))) as channel:
                version = await _recommend(channel)
            async with grpc.aio.insecure_channel(target) as channel:
                plain = await _status(_recommend(channel))
            return version, plain

    version, plain = asyncio.run(scenario())
    assert version == "for 196"
    assert plain is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_trusted_ca(pki):
    security = SecuritySettings.from_env(_tls_env(pki, mutual=True))
    good = ClientTLS.from_files(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    no_cert = ClientTLS.from_files(ca=str(pki.ca))
    rogue = ClientTLS.from_files(str(pki.ca), str(pki.rogue_client_cert), str(pki.rogue_client_key))

    async def scenario():
        async with serving(security) as target:
            results = []
            for tls in (good, no_cert, rogue):
                async with aio_channel(target, tls=tls) as channel:
                    results.append(await _status(_recommend(channel)))
            return results

    assert asyncio.run(scenario()) == [
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAVAILABLE,
    ]


def test_health_probe_speaks_tls(pki, monkeypatch, capsys):
    security = SecuritySettings.from_env(_tls_env(pki, mutual=True))
    tls = ClientTLS.from_files(str(pki.ca), str(pki.client_cert), str(pki.client_key))

    async def scenario():
        async with serving(security) as target:
            ok = await asyncio.to_thread(healthcheck.check, target, tls=tls)
            plain = await asyncio.to_thread(healthcheck.check, target, timeout=1.0)
            monkeypatch.setenv("RECSERVE_TLS_CA", str(pki.ca))
            monkeypatch.setenv("RECSERVE_TLS_CLIENT_CERT", str(pki.client_cert))
            monkeypatch.setenv("RECSERVE_TLS_CLIENT_KEY", str(pki.client_key))
            code = await asyncio.to_thread(healthcheck.main, [target])
            return ok, plain, code

    ok, plain, code = asyncio.run(scenario())
    assert ok and not plain
    assert code == 0 and "SERVING" in capsys.readouterr().out


# --- API keys -----------------------------------------------------------------------------------


def test_keys_decide_per_service_and_health_stays_open():
    security = SecuritySettings.from_env(AUTH_ENV)
    unauth = grpc.StatusCode.UNAUTHENTICATED

    async def scenario():
        async with serving(security) as target, grpc.aio.insecure_channel(target) as channel:
            return {
                "gateway no key": await _status(_recommend(channel)),
                "gateway wrong key": await _status(_recommend(channel, "wrong-key-0123456789abc")),
                "gateway client key": await _status(_recommend(channel, CLIENT_KEY)),
                "gateway old key": await _status(_recommend(channel, OLD_CLIENT_KEY, "x-api-key")),
                "gateway internal key": await _status(_recommend(channel, INTERNAL_KEY)),
                "backend no key": await _status(_apply(channel)),
                "backend client key": await _status(_apply(channel, CLIENT_KEY)),
                "backend internal key": await _status(_apply(channel, INTERNAL_KEY)),
                "health": await _health(channel),
            }

    got = asyncio.run(scenario())
    assert got == {
        "gateway no key": unauth,
        "gateway wrong key": unauth,
        "gateway client key": grpc.StatusCode.OK,
        "gateway old key": grpc.StatusCode.OK,
        "gateway internal key": unauth,
        "backend no key": unauth,
        "backend client key": unauth,
        "backend internal key": grpc.StatusCode.OK,
        "health": health_pb2.HealthCheckResponse.SERVING,
    }


def test_aio_channel_sends_its_key_on_every_call():
    security = SecuritySettings.from_env(AUTH_ENV)

    async def scenario():
        async with (
            serving(security) as target,
            aio_channel(target, api_key=INTERNAL_KEY) as channel,
        ):
            return [await _apply(channel) for _ in range(3)]

    assert asyncio.run(scenario()) == [0, 0, 0]


def test_reflection_needs_a_key_and_unknown_methods_look_the_same():
    security = SecuritySettings.from_env(AUTH_ENV)

    async def list_services(channel, key):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = []
        async for reply in stub.ServerReflectionInfo(iter([request]), metadata=_metadata(key)):
            names += [s.name for s in reply.list_services_response.service]
        return names

    async def scenario():
        async with serving(security) as target, grpc.aio.insecure_channel(target) as channel:
            anonymous = await _status(list_services(channel, None))
            names = await list_services(channel, INTERNAL_KEY)
            unknown = channel.unary_unary("/recserve.v1.Nope/Nothing")
            return anonymous, names, await _status(unknown(b"", timeout=5))

    anonymous, names, unknown = asyncio.run(scenario())
    assert anonymous is grpc.StatusCode.UNAUTHENTICATED
    assert GATEWAY in names and FEATURE in names
    assert unknown is grpc.StatusCode.UNAUTHENTICATED


def test_a_rejection_is_logged_once_with_method_and_peer_but_not_the_key(caplog):
    security = SecuritySettings.from_env(AUTH_ENV)
    wrong = "wrong-secret-0123456789abcdef"

    async def scenario():
        async with serving(security) as target, grpc.aio.insecure_channel(target) as channel:
            await _status(_recommend(channel, wrong))
            await _status(_apply(channel, CLIENT_KEY))
            await _recommend(channel, CLIENT_KEY)

    with caplog.at_level(logging.INFO, logger="recserve.security"):
        asyncio.run(scenario())
    rejected = [r for r in caplog.records if r.name == "recserve.security"]
    assert len(rejected) == 2
    assert all(r.levelno == logging.WARNING for r in rejected)
    assert rejected[0].method == "/recserve.v1.Gateway/Recommend"
    assert rejected[1].method == "/recserve.v1.FeatureService/ApplyEvents"
    assert all("127.0.0.1" in r.peer for r in rejected)
    for record in rejected:
        text = record.getMessage() + repr(record.__dict__)
        assert wrong not in text and CLIENT_KEY not in text


def test_tls_and_keys_together(pki):
    security = SecuritySettings.from_env({**_tls_env(pki, mutual=True), **AUTH_ENV})
    tls = ClientTLS.from_files(str(pki.ca), str(pki.client_cert), str(pki.client_key))

    async def scenario():
        async with serving(security) as target:
            async with aio_channel(target, tls=tls, api_key=CLIENT_KEY) as channel:
                ok = await _recommend(channel)
            async with aio_channel(target, tls=tls) as channel:
                refused = await _status(_recommend(channel))
            return ok, refused

    assert asyncio.run(scenario()) == ("for 196", grpc.StatusCode.UNAUTHENTICATED)
