"""`python -m services.platform.healthcheck HOST:PORT [SERVICE]`: exit 0 when the server reports
SERVING over grpc.health.v1, 1 otherwise. Used by Docker HEALTHCHECK and scripts.

Health needs no API key. Against a TLS server the probe dials TLS from the client settings of
services.platform.security: RECSERVE_TLS_CA (verifies the server), RECSERVE_TLS_CLIENT_CERT/KEY
(mutual TLS), RECSERVE_TLS_SERVER_NAME (the name in the server's certificate when the probe
dials 127.0.0.1). A bad setting exits 2."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.contract.errors import ConfigError
from services.platform.security import ClientTLS, sync_channel


def check(
    target: str, service: str = "", timeout: float = 2.0, tls: ClientTLS | None = None
) -> bool:
    """True when `target` reports SERVING for `service` ("" = the whole server)."""
    with sync_channel(target, tls=tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m services.platform.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    try:
        tls = ClientTLS.from_env()
    except ConfigError as exc:
        print(f"healthcheck: error: {exc}", file=sys.stderr)
        return 2
    ok = check(args[0], args[1] if len(args) == 2 else "", tls=tls)
    print("SERVING" if ok else "NOT_SERVING")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
