"""A throwaway PKI for the security tests (cryptography, dev dependency): one CA, a server
certificate for 127.0.0.1/localhost, a client certificate, and a client certificate from a
second, untrusted CA. Load with `load_pki_module()` (tests are not a package)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path  # signed by a CA the servers do not trust
    rogue_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    subject: str,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "srv", "cli", "rca", "rcl")}
    ca = _issue("recserve test CA", _name("recserve test CA"), keys["ca"], keys["ca"], ca=True)
    rogue_ca = _issue("rogue CA", _name("rogue CA"), keys["rca"], keys["rca"], ca=True)
    pki = Pki(*(directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                        "client.key", "rogue.pem", "rogue.key")))  # fmt: skip
    pki.ca.write_bytes(_pem(ca))
    pki.server_cert.write_bytes(
        _pem(_issue("localhost", ca.subject, keys["ca"], keys["srv"], server=True))
    )
    _write_key(pki.server_key, keys["srv"])
    pki.client_cert.write_bytes(_pem(_issue("gateway", ca.subject, keys["ca"], keys["cli"])))
    _write_key(pki.client_key, keys["cli"])
    pki.rogue_client_cert.write_bytes(
        _pem(_issue("intruder", rogue_ca.subject, keys["rca"], keys["rcl"]))
    )
    _write_key(pki.rogue_client_key, keys["rcl"])
    return pki
