"""Transport security and API-key authentication, shared by every server and outgoing channel.

Everything is off by default (plaintext, no keys): nothing below runs on the request path then.
Settings come from the environment and are validated at start-up (ConfigError names the
variable, never a key). Every variable is documented in docs/security.md.

Server side
    RECSERVE_TLS_CERT, RECSERVE_TLS_KEY   PEM certificate chain + private key: serve TLS
    RECSERVE_TLS_CLIENT_CA                PEM CA bundle: require and verify client certificates
Client side (the gateway's backend channels, the health probe, the launcher, the load test)
    RECSERVE_TLS_CA                       PEM CA bundle that verifies servers: dial TLS
    RECSERVE_TLS_CLIENT_CERT, _KEY        client certificate for mutual TLS
    RECSERVE_TLS_SERVER_NAME              expected server name (when it differs from the host)
API keys (>= 16 visible ASCII characters each)
    RECSERVE_API_KEYS[_FILE]              keys clients may use on the gateway
    RECSERVE_INTERNAL_API_KEYS[_FILE]     keys the backends accept (service-to-service)
    RECSERVE_INTERNAL_API_KEY[_FILE]      the key the gateway sends to its backends
*_KEYS take a comma-separated list, *_KEYS_FILE one key per line (a mounted Kubernetes Secret);
both may be set and are merged. Several keys at once = rotation without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.contract.errors import ConfigError
from services.platform import env_names

log = logging.getLogger("recserve.security")

Env = Mapping[str, str]

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
# Services called by clients with RECSERVE_API_KEYS; every other service is internal.
PUBLIC_SERVICES = frozenset({"recserve.v1.Gateway"})
MIN_KEY_LENGTH = 16
REJECTED_MESSAGE = "missing or invalid API key"


def _get(env: Env | None, name: str) -> str | None:
    value = (os.environ if env is None else env).get(name)
    value = None if value is None or value.strip() == "" else value.strip()
    if env is None and value is not None:
        env_names.record(name, value)  # masked there: keys never reach a log
    return value


def _read_file(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r} cannot be read: {exc.strerror or exc}") from None


def _pem(name: str, path: str | None) -> bytes | None:
    """Contents of the PEM file at `path` (None when unset); `name` labels errors."""
    if path is None or path.strip() == "":
        return None
    data = _read_file(name, path.strip())
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{name}={path!r} is not a PEM file")
    return data


def _read_pem(env: Env | None, name: str) -> bytes | None:
    return _pem(name, _get(env, name))


def _check_key(name: str, key: str) -> str:
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{name}: every key needs at least {MIN_KEY_LENGTH} characters")
    if not all(0x21 <= ord(c) <= 0x7E for c in key) or "," in key:
        raise ConfigError(f"{name}: keys must be visible ASCII without spaces or commas")
    return key


def _read_keys(env: Env | None, name: str) -> tuple[str, ...]:
    """NAME (comma-separated) plus NAME_FILE (one key per line; blank lines and # ignored)."""
    keys: list[str] = []
    raw = _get(env, name)
    if raw is not None:
        keys += [_check_key(name, k.strip()) for k in raw.split(",") if k.strip()]
    path = _get(env, f"{name}_FILE")
    if path is not None:
        text = _read_file(f"{name}_FILE", path).decode("ascii", errors="replace")
        lines = [line.strip() for line in text.splitlines()]
        keys += [_check_key(f"{name}_FILE", k) for k in lines if k and not k.startswith("#")]
        if not keys:
            raise ConfigError(f"{name}_FILE={path!r} holds no key")
    return tuple(dict.fromkeys(keys))


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", errors="surrogateescape")).digest()


@dataclass(frozen=True)
class ServerTLS:
    """PEM contents (read once at start-up). client_ca set = mutual TLS (client cert required)."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.mutual,
        )


@dataclass(frozen=True)
class ClientTLS:
    """How to dial a TLS server: CA to verify it (None = system roots), optional client cert."""

    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        server_name: str | None = None,
    ) -> ClientTLS:
        """From PEM paths (the CLI's --tls-ca/--tls-cert/--tls-key)."""
        if (cert is None) != (key is None):
            raise ConfigError("a client certificate needs its key (and the key its certificate)")
        return cls(_pem("CA", ca), _pem("cert", cert), _pem("key", key), server_name or None)

    @classmethod
    def from_env(cls, env: Env | None = None) -> ClientTLS | None:
        """RECSERVE_TLS_CA / _CLIENT_CERT / _CLIENT_KEY / _SERVER_NAME; None = plaintext."""
        ca = _read_pem(env, "RECSERVE_TLS_CA")
        cert = _read_pem(env, "RECSERVE_TLS_CLIENT_CERT")
        key = _read_pem(env, "RECSERVE_TLS_CLIENT_KEY")
        if (cert is None) != (key is None):
            raise ConfigError(
                "RECSERVE_TLS_CLIENT_CERT and RECSERVE_TLS_CLIENT_KEY must be set together"
            )
        if ca is None and cert is None:
            return None
        return cls(ca, cert, key, _get(env, "RECSERVE_TLS_SERVER_NAME"))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def options(self) -> list[tuple[str, Any]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


@dataclass(frozen=True)
class SecuritySettings:
    """TLS for this server and its outgoing channels, and the API keys it accepts / sends.

    The default (SecuritySettings()) is everything off."""

    server_tls: ServerTLS | None = None
    client_tls: ClientTLS | None = None
    client_key_digests: frozenset[bytes] = field(default=frozenset(), repr=False)
    internal_key_digests: frozenset[bytes] = field(default=frozenset(), repr=False)
    outgoing_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> SecuritySettings:
        cert, key = _read_pem(env, "RECSERVE_TLS_CERT"), _read_pem(env, "RECSERVE_TLS_KEY")
        client_ca = _read_pem(env, "RECSERVE_TLS_CLIENT_CA")
        if (cert is None) != (key is None):
            raise ConfigError("RECSERVE_TLS_CERT and RECSERVE_TLS_KEY must be set together")
        if client_ca is not None and cert is None:
            raise ConfigError("RECSERVE_TLS_CLIENT_CA (mutual TLS) needs RECSERVE_TLS_CERT/KEY")
        server_tls = ServerTLS(cert, key, client_ca) if cert is not None and key else None

        outgoing = _read_keys(env, "RECSERVE_INTERNAL_API_KEY")
        if len(outgoing) > 1:
            raise ConfigError("RECSERVE_INTERNAL_API_KEY[_FILE] must hold exactly one key")
        return cls(
            server_tls=server_tls,
            client_tls=ClientTLS.from_env(env),
            client_key_digests=frozenset(map(key_digest, _read_keys(env, "RECSERVE_API_KEYS"))),
            internal_key_digests=frozenset(
                map(key_digest, _read_keys(env, "RECSERVE_INTERNAL_API_KEYS"))
            ),
            outgoing_key=outgoing[0] if outgoing else None,
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.client_key_digests or self.internal_key_digests)

    def check_services(self, service_names: Iterable[str]) -> None:
        """With auth on, a served service without any key it could accept is a config error."""
        if not self.auth_enabled:
            return
        for name in service_names:
            public = name in PUBLIC_SERVICES
            if public and not self.client_key_digests:
                raise ConfigError(f"{name} needs RECSERVE_API_KEYS when API keys are in use")
            if not public and not self.internal_key_digests:
                raise ConfigError(
                    f"{name} needs RECSERVE_INTERNAL_API_KEYS when API keys are in use"
                )

    def auth_interceptor(self) -> AuthInterceptor | None:
        if not self.auth_enabled:
            return None
        return AuthInterceptor(self.client_key_digests, self.internal_key_digests)

    def describe(self) -> str:
        tls = "off" if self.server_tls is None else "mtls" if self.server_tls.mutual else "tls"
        return f"tls={tls} auth={'on' if self.auth_enabled else 'off'}"


# --- server side: the interceptor -------------------------------------------------------------


def presented_key(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The key from `authorization: Bearer <key>` or `x-api-key: <key>` (first one wins)."""
    for name, value in metadata or ():
        if isinstance(value, bytes):
            continue
        if name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == "x-api-key" and value.strip():
            return value.strip()
    return None


def key_matches(key: str, accepted: Iterable[bytes]) -> bool:
    """Constant time in the key: compares sha256 digests, and always against every digest."""
    digest = key_digest(key)
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(digest, candidate)
    return matched


def _service_of(method: str) -> str:
    return method.split("/")[1] if method.count("/") >= 2 else ""


def _rejecting_handler(
    handler: grpc.RpcMethodHandler | None, method: str, reason: str
) -> grpc.RpcMethodHandler:
    async def reject(_request: Any, context: grpc.aio.ServicerContext) -> None:
        log.warning(
            "rejected unauthenticated call: method=%s peer=%s reason=%s",
            method,
            context.peer(),
            reason,
            extra={"method": method, "peer": context.peer(), "reason": reason},
        )
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REJECTED_MESSAGE)

    if handler is None:  # unknown method: no hint to an unauthenticated caller that it is unknown
        return grpc.unary_unary_rpc_method_handler(reject)
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(reject, **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(reject, **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(reject, **codec)
    return grpc.stream_stream_rpc_method_handler(reject, **codec)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """API-key check on every call, before any other interceptor or handler.

    grpc.health.v1.Health is open (probes carry no key). recserve.v1.Gateway accepts the client
    keys; every other service accepts only the internal keys; reflection accepts either (it
    describes the API, so it is not offered to anonymous callers). A missing or wrong key ->
    UNAUTHENTICATED and one WARNING line with method, peer and reason (never the key).
    """

    def __init__(self, client_digests: Iterable[bytes], internal_digests: Iterable[bytes]):
        self._client = frozenset(client_digests)
        self._internal = frozenset(internal_digests)
        self._accepted_by_method: dict[str, frozenset[bytes] | None] = {}

    def accepted(self, method: str) -> frozenset[bytes] | None:
        """Digests accepted for `method` (None = open to everyone)."""
        try:
            return self._accepted_by_method[method]
        except KeyError:
            pass
        service = _service_of(method)
        accepted: frozenset[bytes] | None
        if service == HEALTH_SERVICE:
            accepted = None
        elif service in REFLECTION_SERVICES:
            accepted = self._client | self._internal
        elif service in PUBLIC_SERVICES:
            accepted = self._client
        else:
            accepted = self._internal
        if len(self._accepted_by_method) < 1024:  # bounded: method names come from callers
            self._accepted_by_method[method] = accepted
        return accepted

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        accepted = self.accepted(method)
        if accepted is None:
            return await continuation(handler_call_details)
        key = presented_key(handler_call_details.invocation_metadata)
        if key is not None and key_matches(key, accepted):
            return await continuation(handler_call_details)
        reason = "no API key" if key is None else "API key not accepted here"
        return _rejecting_handler(await continuation(handler_call_details), method, reason)


# --- client side: outgoing channels ---------------------------------------------------------


def auth_metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


class _KeyInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <key>` to every unary call made on an aio channel."""

    def __init__(self, key: str) -> None:
        self._metadata = auth_metadata(key)

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *self._metadata)
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            metadata,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def aio_channel(
    target: str,
    *,
    tls: ClientTLS | None = None,
    api_key: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel: TLS when `tls` is set; `api_key` sent on every unary call."""
    from services.platform import tracing  # here: OpenTelemetry loads only once a channel is made

    chain = [*tracing.client_interceptors(), *([_KeyInterceptor(api_key)] if api_key else [])]
    interceptors = chain or None
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    return grpc.aio.secure_channel(
        target,
        tls.credentials(),
        options=[*options, *tls.options()],
        interceptors=interceptors,
    )


def sync_channel(
    target: str, *, tls: ClientTLS | None = None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A blocking channel, TLS when `tls` is set (callers pass auth_metadata(key) per call)."""
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])


def outgoing_channel_from_env(
    target: str,
    *,
    api_key_var: str = "RECSERVE_API_KEY",
    env: Env | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A tool's aio channel from RECSERVE_TLS_CA/_CLIENT_CERT/_CLIENT_KEY/_SERVER_NAME and the
    key in `api_key_var` (or its _FILE variant), with `options` (gRPC channel options). Raises
    ConfigError on a bad setting."""
    keys = _read_keys(env, api_key_var)
    return aio_channel(
        target, tls=ClientTLS.from_env(env), api_key=keys[0] if keys else None, options=options
    )
