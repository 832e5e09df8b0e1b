"""`recserve`: talk to a running gateway, or run the services.

    recserve recommend --user 196 -k 10 [--include-tags Comedy] [--json]
    recserve predict --user 196 --items 242,302
    recserve similar --item 50 -k 10
    recserve tags --user 196 -k 5
    recserve value --users 196,186
    recserve feedback --user 196 --item 50 --type rating --rating 5
    recserve serve [--mode split|embedded] [--artifacts DIR] [--version latest]
    recserve demo [--user 196] [-k 10]      # start 5 processes, recommend, stop them
    recserve bundle list|publish DIR|rollback [--to VERSION] [--artifacts DIR]

The gateway address is --target, else $RECSERVE_TARGET, else 127.0.0.1:50051.
A secured gateway (docs/security.md): --tls-ca/--tls-cert/--tls-key/--tls-server-name and
--api-key, else $RECSERVE_TLS_CA, $RECSERVE_TLS_CLIENT_CERT, $RECSERVE_TLS_CLIENT_KEY,
$RECSERVE_TLS_SERVER_NAME and $RECSERVE_API_KEY (--tls alone: TLS verified by system roots).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from recserve.client import DEFAULT_TARGET, EVENT_TYPES, ClientTLS, FeedbackEvent, RecserveClient
from recserve.items import add_parser as add_items_parser
from recserve.v1 import common_pb2
from services.common.errors import ConfigError


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _print_json(message: Message) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    rows_ = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(line.format(*row).rstrip() for row in rows_)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _items_table(items: Sequence) -> str:
    rows = [
        (n, it.item_id, _clip(it.title, 44), _clip(", ".join(it.tags), 32),
         f"{it.score:.4f}", f"{it.predicted_rating:.2f}" if it.predicted_rating else "-")
        for n, it in enumerate(items, 1)
    ]  # fmt: skip
    return _table(("#", "item", "title", "tags", "score", "rating"), rows)


def _value_line(value: common_pb2.UserValue) -> str:
    segment = common_pb2.Segment.Name(value.segment).removeprefix("SEGMENT_")
    return (
        f"user {value.user_id}: segment {segment}, P(active in {value.horizon_weeks:g} weeks) "
        f"{value.p_active:.2f}, expected transactions {value.expected_transactions:.2f}, "
        f"expected value {value.expected_value:.2f}"
    )


def print_recommendations(reply, header: str) -> None:
    print(header)
    print(_items_table(reply.items))
    notes = [f"model {reply.model_version}"]
    if reply.cold_start:
        notes.append("cold start: popular items")
    if reply.fallbacks:
        notes.append(f"fallbacks: {', '.join(reply.fallbacks)}")
    print("  ".join(notes))
    if reply.HasField("user_value"):
        print(_value_line(reply.user_value))


# --- commands that talk to a running gateway ---------------------------------------------------


def cmd_recommend(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.recommend(
        args.user,
        args.k,
        exclude_seen=not args.include_seen,
        include_tags=args.include_tags,
        exclude_tags=args.exclude_tags,
        exclude_items=args.exclude_items,
        recent_items=args.recent,
    )
    if args.json:
        return _print_json(reply)
    print_recommendations(reply, f"Top {len(reply.items)} for user {args.user}")


def cmd_predict(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.predict_ratings(args.user, args.items)
    if args.json:
        return _print_json(reply)
    rows = [(r.item_id, f"{r.rating:.2f}", f"{r.p_positive:.3f}") for r in reply.ratings]
    print(_table(("item", "rating", "P(rating>=4)"), rows))
    print(f"model {reply.model_version}" + ("  cold start" if reply.cold_start else ""))


def cmd_similar(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.similar_items(
        args.item, args.k, include_tags=args.include_tags, exclude_tags=args.exclude_tags
    )
    if args.json:
        return _print_json(reply)
    print(f"Items like {args.item}")
    print(_items_table(reply.items))
    print(f"model {reply.model_version}")


def cmd_tags(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.recommend_tags(args.user, args.k)
    if args.json:
        return _print_json(reply)
    print(_table(("tag", "affinity"), [(t.tag, f"{t.affinity:.3f}") for t in reply.tags]))
    print(f"model {reply.model_version}" + ("  cold start" if reply.cold_start else ""))


def cmd_value(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.score_users(args.users)
    if args.json:
        return _print_json(reply)
    rows = [
        (v.user_id, common_pb2.Segment.Name(v.segment).removeprefix("SEGMENT_"),
         f"{v.p_active:.3f}", f"{v.expected_transactions:.2f}", f"{v.expected_value:.2f}",
         f"{v.horizon_weeks:g}")
        for v in reply.values
    ]  # fmt: skip
    headers = ("user", "segment", "P(active)", "E[transactions]", "E[value]", "weeks")
    print(_table(headers, rows))
    print(f"model {reply.model_version}")


def cmd_feedback(client: RecserveClient, args: argparse.Namespace) -> None:
    event = FeedbackEvent(args.user, args.item, args.type, args.rating, args.value, args.timestamp)
    reply = client.feedback([event])
    if args.json:
        return _print_json(reply)
    print(f"accepted {reply.accepted} event(s)")


# --- commands that run the services ------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from services.launcher import DEFAULT_PORTS, Launcher, LaunchError, RestartPolicy

    policy = RestartPolicy(max_crashes=args.max_crashes, window_s=args.crash_window)
    try:
        launcher = Launcher(
            args.artifacts, args.version, mode=args.mode, ports=DEFAULT_PORTS, restart=policy
        )
        launcher.start(timeout=args.start_timeout)
    except (LaunchError, ConfigError) as exc:
        print(f"recserve serve: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(f"{n}={p}" for n, p in launcher.ports.items())
    print(f"recserve: {args.mode} mode SERVING ({names}); gateway {launcher.gateway_target}")
    if launcher.metrics_ports:
        urls = ", ".join(
            f"{n}=http://127.0.0.1:{p}/metrics" for n, p in launcher.metrics_ports.items()
        )
        print(f"recserve: metrics {urls}")
    where = launcher.feedback_log or "nowhere (RECSERVE_FEATURE_LOG_DIR=none: feedback is lost)"
    print(f"recserve: durable feedback log {where}")
    print(
        f"recserve: a crashed service is restarted on its port (giving up after "
        f"{policy.max_crashes} crashes in {policy.window_s:g}s); press Ctrl-C to stop"
    )
    # Ctrl-C or SIGTERM (docker stop, systemd) both mean: stop the services cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    failed = False
    try:
        while not (failed := "gateway" in launcher.failed()):
            time.sleep(0.5)
        print("recserve serve: gave up on the gateway: stopping everything", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    codes = launcher.stop()
    return _report_exits(codes) or (1 if failed else 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from services.launcher import Launcher, LaunchError

    log_dir = tempfile.mkdtemp(prefix="recserve-demo-")
    start = time.perf_counter()
    try:
        launcher = Launcher(args.artifacts, args.version, mode=args.mode, log_dir=log_dir)
        client = _client(args, launcher.gateway_target)
        launcher.start(timeout=args.start_timeout)
    except (LaunchError, ConfigError) as exc:
        print(f"recserve demo: {exc}\n(logs in {log_dir})", file=sys.stderr)
        return 1
    ports = ", ".join(f"{n}:{p}" for n, p in launcher.ports.items())
    print(f"started {len(launcher.ports)} services in {time.perf_counter() - start:.1f}s ({ports})")
    try:
        with client:
            t0 = time.perf_counter()
            reply = client.recommend(args.user, args.k)
            took_ms = (time.perf_counter() - t0) * 1e3
        print_recommendations(reply, f"Top {len(reply.items)} for user {args.user}")
        via = "every stage in-process" if args.mode == "embedded" else ", ".join(launcher.ports)
        print(f"answered in {took_ms:.1f} ms ({via})")
    except grpc.RpcError as exc:
        print(f"recserve demo: {exc.code().name}: {exc.details()}", file=sys.stderr)
        _report_exits(launcher.stop())
        return 1
    codes = launcher.stop()
    failed = _report_exits(codes)
    if not failed:
        print(f"stopped {len(codes)} services cleanly (logs in {log_dir})")
    return failed


def _client(args: argparse.Namespace, target: str) -> RecserveClient:
    """A client with the security flags (or their environment defaults); ConfigError if bad."""
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = ClientTLS.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    return RecserveClient(target, timeout=args.timeout, tls=tls, api_key=args.api_key)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _report_exits(codes: dict[str, int]) -> int:
    bad = {name: code for name, code in codes.items() if code != 0}
    for name, code in bad.items():
        print(f"recserve: {name} exited with code {code}", file=sys.stderr)
    return 1 if bad else 0


# --- argument parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recserve", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    env = os.environ.get
    security_opts = argparse.ArgumentParser(add_help=False)
    sec = security_opts.add_argument_group("security (docs/security.md)")
    sec.add_argument("--tls", action="store_true", help="dial TLS (system roots unless --tls-ca)")
    sec.add_argument("--tls-ca", default=env("RECSERVE_TLS_CA"), metavar="PEM")
    sec.add_argument("--tls-cert", default=env("RECSERVE_TLS_CLIENT_CERT"), metavar="PEM")
    sec.add_argument("--tls-key", default=env("RECSERVE_TLS_CLIENT_KEY"), metavar="PEM")
    sec.add_argument("--tls-server-name", default=env("RECSERVE_TLS_SERVER_NAME"))
    sec.add_argument("--api-key", default=env("RECSERVE_API_KEY"), help="sent as a bearer token")

    client_opts = argparse.ArgumentParser(add_help=False, parents=[security_opts])
    client_opts.add_argument("--target", default=os.environ.get("RECSERVE_TARGET", DEFAULT_TARGET))
    client_opts.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    client_opts.add_argument("--json", action="store_true", help="print the reply as JSON")

    def client_cmd(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[client_opts], help=help_)
        p.set_defaults(func=func)
        return p

    p = client_cmd("recommend", cmd_recommend, "top-k items for a user")
    p.add_argument("--user", required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--include-tags", type=_csv, default=[], metavar="A,B")
    p.add_argument("--exclude-tags", type=_csv, default=[], metavar="A,B")
    p.add_argument("--exclude-items", type=_csv, default=[], metavar="ID,ID")
    p.add_argument("--recent", type=_csv, default=[], metavar="ID,ID", help="just viewed")
    p.add_argument("--include-seen", action="store_true", help="keep already-seen items")

    p = client_cmd("predict", cmd_predict, "predicted ratings of items for a user")
    p.add_argument("--user", required=True)
    p.add_argument("--items", type=_csv, required=True, metavar="ID,ID")

    p = client_cmd("similar", cmd_similar, "items similar to an item")
    p.add_argument("--item", required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--include-tags", type=_csv, default=[], metavar="A,B")
    p.add_argument("--exclude-tags", type=_csv, default=[], metavar="A,B")

    p = client_cmd("tags", cmd_tags, "a user's interest tags")
    p.add_argument("--user", required=True)
    p.add_argument("-k", type=int, default=5)

    p = client_cmd("value", cmd_value, "value and propensity of users")
    p.add_argument("--users", type=_csv, required=True, metavar="ID,ID")

    p = client_cmd("feedback", cmd_feedback, "send one event")
    p.add_argument("--user", required=True)
    p.add_argument("--item", required=True)
    p.add_argument("--type", choices=sorted(EVENT_TYPES), default="view")
    p.add_argument("--rating", type=float, default=0.0)
    p.add_argument("--value", type=float, default=0.0)
    p.add_argument("--timestamp", type=int, default=0, help="unix seconds; 0 = now")

    add_items_parser(client_cmd)

    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--artifacts", default=os.environ.get("RECSERVE_ARTIFACTS", "artifacts"))
    run_opts.add_argument("--version", default="latest", help="bundle version (or latest)")
    run_opts.add_argument("--start-timeout", type=float, default=120.0, help="seconds")

    p = sub.add_parser(
        "serve", parents=[run_opts], help="run and supervise the services until Ctrl-C"
    )
    p.add_argument("--mode", choices=("split", "embedded"), default="split")
    p.add_argument(
        "--max-crashes", type=int, default=5, metavar="N",
        help="give up on a service after N crashes within --crash-window (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--crash-window", type=float, default=120.0, metavar="S",
        help="seconds over which crashes are counted (default: %(default)s)",
    )  # fmt: skip
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "demo", parents=[run_opts, security_opts], help="start 5 services, recommend, stop"
    )
    p.add_argument("--mode", choices=("split", "embedded"), default="split")
    p.add_argument("--user", default="196")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for the call")
    p.set_defaults(run=cmd_demo)
    add_bundle_commands(sub)
    return parser


# --- bundle publishing (hot reload: services follow artifacts/LATEST) --------------------------


def add_bundle_commands(sub) -> None:
    bundle = sub.add_parser("bundle", help="list, publish or roll back artifact bundles")
    bundle.add_argument(
        "--artifacts", default=os.environ.get("RECSERVE_ARTIFACTS", "artifacts"), metavar="DIR"
    )
    actions = bundle.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="bundles under --artifacts, the live one marked")
    p = actions.add_parser("publish", help="validate a bundle directory and make it live")
    p.add_argument("source", metavar="VERSION_DIR")
    p = actions.add_parser("rollback", help="make the previously live bundle live again")
    p.add_argument("--to", default=None, metavar="VERSION", help="this version instead")
    bundle.set_defaults(run=cmd_bundle)


def cmd_bundle(args: argparse.Namespace) -> int:
    from services.common import publish as pub
    from services.common.errors import BundleError

    artifacts = Path(args.artifacts)
    try:
        if args.action == "list":
            rows = [
                ("*" if b.latest else "", b.version, b.created_at)
                for b in pub.list_bundles(artifacts)
            ]
            print(_table(("live", "version", "created_at"), rows))
        elif args.action == "publish":
            print(f"published {pub.publish(artifacts, Path(args.source)).version}")
        else:
            print(f"rolled back to {pub.rollback(artifacts, args.to).version}")
    except BundleError as exc:
        print(f"recserve bundle: refused: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "run"):
        return args.run(args)
    try:
        with _client(args, args.target) as client:
            args.func(client, args)
    except grpc.RpcError as exc:
        hint = " (is the gateway running? `recserve serve`)" if _unreachable(exc) else ""
        print(f"recserve: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
        return 1
    except (ValueError, ConfigError) as exc:
        print(f"recserve: {exc}", file=sys.stderr)
        return 2
    return 0


def _unreachable(exc: grpc.RpcError) -> bool:
    return exc.code() is grpc.StatusCode.UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
