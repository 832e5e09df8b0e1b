"""The whole split stack (gateway + 4 backends, five processes via services.launcher) with mutual
TLS everywhere and API keys: the client key gets recommendations through recserve.client and the
CLI; no key, a wrong key, no client certificate, or a backend called directly with the client key
are all refused. Everything is configured through the environment, as in production."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import grpc
import pytest

from recserve.cli import main
from recserve.client import ClientTLS, RecserveClient
from services.launcher import Launcher
from services.platform.healthcheck import check

CLIENT_KEY = "stack-client-key-0123456789"
INTERNAL_KEY = "stack-internal-key-0123456789"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _load_pki():
    path = Path(__file__).resolve().parents[1] / "pki.py"
    spec = importlib.util.spec_from_file_location("recserve_test_pki", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return _load_pki().make_pki(tmp_path_factory.mktemp("stack-pki"))


@pytest.fixture(scope="module")
def secure_stack(tiny_bundle: Path, pki, tmp_path_factory: pytest.TempPathFactory):
    keys_file = tmp_path_factory.mktemp("secrets") / "internal-keys"
    keys_file.write_text(f"{INTERNAL_KEY}\nstack-internal-next-0123456789\n")
    env = {
        "RECSERVE_TLS_CERT": str(pki.server_cert),
        "RECSERVE_TLS_KEY": str(pki.server_key),
        "RECSERVE_TLS_CLIENT_CA": str(pki.ca),
        "RECSERVE_TLS_CA": str(pki.ca),
        "RECSERVE_TLS_CLIENT_CERT": str(pki.client_cert),
        "RECSERVE_TLS_CLIENT_KEY": str(pki.client_key),
        "RECSERVE_API_KEYS": CLIENT_KEY,
        "RECSERVE_INTERNAL_API_KEYS_FILE": str(keys_file),
        "RECSERVE_INTERNAL_API_KEY": INTERNAL_KEY,
        "RECSERVE_RANKING_DEVICE": "cpu",
        "RECSERVE_LOG_FORMAT": "text",
        **{f"RECSERVE_{n}_DEADLINE_MS": "5000" for n in ("FEATURE", "RETRIEVAL", "RANKING")},
        "RECSERVE_USERVALUE_DEADLINE_MS": "5000",
    }
    log_dir = tmp_path_factory.mktemp("secure-logs")
    launcher = Launcher(
        tiny_bundle.parent, tiny_bundle.name, mode="split", log_dir=log_dir, env=env
    )
    launcher.start(timeout=240)
    try:
        yield launcher
    finally:
        codes = launcher.stop()
        assert codes == dict.fromkeys(codes, 0), codes


@pytest.fixture(scope="module")
def tls(pki) -> ClientTLS:
    return ClientTLS.from_files(str(pki.ca), str(pki.client_cert), str(pki.client_key))


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_client_key_over_mutual_tls_gets_recommendations(secure_stack, tls):
    with RecserveClient(secure_stack.gateway_target, timeout=30, tls=tls, api_key=CLIENT_KEY) as c:
        reply = c.recommend("196", k=5)
    assert len(reply.items) == 5
    assert list(reply.fallbacks) == []  # every backend answered the gateway's internal key
    assert reply.HasField("user_value")


def test_the_stack_refuses_callers_without_the_right_credentials(secure_stack, tls, pki):
    target = secure_stack.gateway_target
    with RecserveClient(target, timeout=10, tls=tls) as no_key:
        assert _code(lambda: no_key.recommend("196")) is grpc.StatusCode.UNAUTHENTICATED
    with RecserveClient(target, timeout=10, tls=tls, api_key="not-the-key-0123456789") as wrong:
        assert _code(lambda: wrong.recommend("196")) is grpc.StatusCode.UNAUTHENTICATED
    no_cert = ClientTLS.from_files(ca=str(pki.ca))
    with RecserveClient(target, timeout=10, tls=no_cert, api_key=CLIENT_KEY) as anonymous:
        assert _code(lambda: anonymous.recommend("196")) is grpc.StatusCode.UNAVAILABLE
    with RecserveClient(target, timeout=10, api_key=CLIENT_KEY) as plaintext:
        assert _code(lambda: plaintext.recommend("196")) is grpc.StatusCode.UNAVAILABLE


def test_backends_refuse_the_client_key_and_keep_health_open(secure_stack, tls):
    from recserve.v1 import feature_pb2, feature_pb2_grpc

    feature = secure_stack.targets["feature"]
    request = feature_pb2.GetUserRequest(user_id="196")
    with grpc.secure_channel(feature, tls.credentials()) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        for key, expected in ((CLIENT_KEY, grpc.StatusCode.UNAUTHENTICATED),
                              (None, grpc.StatusCode.UNAUTHENTICATED),
                              (INTERNAL_KEY, grpc.StatusCode.OK)):  # fmt: skip
            md = None if key is None else (("authorization", f"Bearer {key}"),)
            assert _code(lambda md=md: stub.GetUser(request, timeout=10, metadata=md)) is expected
    for name, target in secure_stack.targets.items():
        assert check(target, tls=tls), name  # health: TLS yes, key no


def test_cli_with_security_flags(secure_stack, pki, capsys):
    base = ["recommend", "--target", secure_stack.gateway_target, "--user", "196", "-k", "3"]
    tls_flags = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
                 "--tls-key", str(pki.client_key)]  # fmt: skip
    assert main([*base, *tls_flags, "--api-key", CLIENT_KEY, "--json", "--timeout", "30"]) == 0
    assert '"items"' in capsys.readouterr().out
    assert main([*base, *tls_flags]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main([*base, "--tls-ca", "/nonexistent/ca.pem"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_rejections_are_logged_without_the_key(secure_stack, tls):
    target = secure_stack.gateway_target
    with RecserveClient(target, timeout=10, tls=tls, api_key="not-the-key-0123456789") as wrong:
        assert _code(lambda: wrong.recommend("196")) is grpc.StatusCode.UNAUTHENTICATED
    log = (Path(secure_stack.log_dir) / "gateway.log").read_text()
    assert "rejected unauthenticated call" in log
    assert "/recserve.v1.Gateway/Recommend" in log
    assert "not-the-key-0123456789" not in log and CLIENT_KEY not in log
    assert "tls=mtls auth=on" in log
