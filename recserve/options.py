"""Options shared by several `recserve` commands, and the client they describe.

Every option says what it does and shows its default in --help (HelpFormatter)."""

from __future__ import annotations

import argparse
import os

from recserve.client import DEFAULT_TARGET, ClientTLS, RecserveClient


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows each option's default (when it has one worth showing: not None, False or
    empty); descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_ = action.help or ""
        default = action.default
        if "%(default)" in help_ or default in (None, False, [], argparse.SUPPRESS):
            return help_
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{help_} (default: %(default)s)"
        return help_


def csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def security_options() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(add_help=False)
    sec = parser.add_argument_group("security (docs/security.md)")
    sec.add_argument("--tls", action="store_true", help="dial TLS (system roots unless --tls-ca)")
    sec.add_argument(
        "--tls-ca",
        default=env("RECSERVE_TLS_CA"),
        metavar="PEM",
        help="CA that signed the gateway's certificate ($RECSERVE_TLS_CA)",
    )
    sec.add_argument(
        "--tls-cert",
        default=env("RECSERVE_TLS_CLIENT_CERT"),
        metavar="PEM",
        help="client certificate for mutual TLS ($RECSERVE_TLS_CLIENT_CERT)",
    )
    sec.add_argument(
        "--tls-key",
        default=env("RECSERVE_TLS_CLIENT_KEY"),
        metavar="PEM",
        help="its private key ($RECSERVE_TLS_CLIENT_KEY)",
    )
    sec.add_argument(
        "--tls-server-name",
        default=env("RECSERVE_TLS_SERVER_NAME"),
        metavar="NAME",
        help="name in the gateway's certificate ($RECSERVE_TLS_SERVER_NAME)",
    )
    sec.add_argument("--api-key", default=env("RECSERVE_API_KEY"), metavar="KEY",
                     help="sent as a bearer token ($RECSERVE_API_KEY)")  # fmt: skip
    return parser


def client_options(security: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, parents=[security])
    parser.add_argument("--target", default=os.environ.get("RECSERVE_TARGET", DEFAULT_TARGET),
                        metavar="HOST:PORT", help="the gateway ($RECSERVE_TARGET)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds per call")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")
    return parser


def client_from_args(args: argparse.Namespace, target: str) -> RecserveClient:
    """A client with the security flags (or their environment defaults); ConfigError if bad."""
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = ClientTLS.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    return RecserveClient(target, timeout=args.timeout, tls=tls, api_key=args.api_key)
