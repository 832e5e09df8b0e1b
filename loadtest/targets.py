"""Where load may go: loopback by default; any other address only when the caller passes it
explicitly *and* allows a remote target (a load test aimed at the wrong host is an outage)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} must be HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name: never resolved here, so never assumed local


def check_target(target: str, *, allow_remote: bool = False) -> str:
    """-> target unchanged; ValueError for a malformed or (without allow_remote) remote one."""
    host, _ = split_target(target)
    if not is_loopback(host) and not allow_remote:
        raise ValueError(
            f"target {target!r} is not a loopback address; pass it explicitly with "
            "--allow-remote to load-test another machine"
        )
    return target
