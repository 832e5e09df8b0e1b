"""Where load may go: loopback by default; any other address only when the caller passes it
explicitly *and* allows a remote target (a load test aimed at the wrong host is an outage).

A target is HOST:PORT, or several replicas of one service as gRPC's address list
`ipv4:HOST:PORT,HOST:PORT,...` (`ipv6:` likewise): the harness then spreads its calls over them
round robin (`channel_options`), as a client-side balancer in front of replicas would. Several
processes sharing one port (SO_REUSEPORT) would not do: the kernel spreads connections, and a
harness process holds one."""

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


ADDRESS_LIST_SCHEMES = ("ipv4:", "ipv6:")


def addresses(target: str) -> list[str]:
    """The HOST:PORT entries of a target: itself, or each of an `ipv4:`/`ipv6:` address list."""
    for scheme in ADDRESS_LIST_SCHEMES:
        if target.startswith(scheme):
            return target[len(scheme) :].split(",")
    return [target]


def channel_options(target: str) -> list[tuple[str, str]]:
    """gRPC channel options for `target`: round robin over an address list's entries (gRPC's
    default policy, pick_first, would send every call to the first one)."""
    return [("grpc.lb_policy_name", "round_robin")] if len(addresses(target)) > 1 else []


def check_target(target: str, *, allow_remote: bool = False) -> str:
    """-> target unchanged; ValueError for a malformed or (without allow_remote) remote one
    (every entry of an address list is checked)."""
    for address in addresses(target):
        host, _ = split_target(address)
        if not is_loopback(host) and not allow_remote:
            raise ValueError(
                f"target {target!r} is not a loopback address; pass it explicitly with "
                "--allow-remote to load-test another machine"
            )
    return target
