"""`recserve`: talk to a running gateway, or run the services.

    recserve recommend --user 196 -k 10 [--include-tags Comedy] [--json]
    recserve predict --user 196 --items 242,302
    recserve similar --item 50 -k 10
    recserve tags --user 196 -k 5
    recserve value --users 196,186
    recserve feedback --user 196 --item 50 --type rating --rating 5
    recserve add-items items.jsonl
    recserve serve [--mode split|embedded] [--artifacts DIR] [--version latest]
    recserve demo [--user 196] [-k 10]      # start 5 processes, recommend, stop them
    recserve bundle list|publish DIR|rollback [--to VERSION] [--artifacts DIR]

The gateway address is --target, else $RECSERVE_TARGET, else 127.0.0.1:50051.
A secured gateway (docs/security.md): --tls-ca/--tls-cert/--tls-key/--tls-server-name and
--api-key, else $RECSERVE_TLS_CA, $RECSERVE_TLS_CLIENT_CERT, $RECSERVE_TLS_CLIENT_KEY,
$RECSERVE_TLS_SERVER_NAME and $RECSERVE_API_KEY (--tls alone: TLS verified by system roots).
Options go before or after the command's own arguments; `recserve COMMAND --help` lists them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import grpc

from recserve.client import EVENT_TYPES, FeedbackEvent, RecserveClient
from recserve.data_cmds import add_data_commands
from recserve.display import amount, items_table, print_json, print_recommendations, table
from recserve.items import add_parser as add_items_parser
from recserve.options import HelpFormatter, client_from_args, client_options, csv
from recserve.options import security_options as make_security_options
from recserve.serve import add_bundle_commands, add_run_commands
from recserve.v1 import common_pb2
from services.contract.errors import ConfigError

# --- commands that talk to a running gateway ---------------------------------------------------


def cmd_recommend(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.recommend(
        args.user,
        args.k,
        exclude_seen=False if args.include_seen else None,  # None: the dataset's default
        include_tags=args.include_tags,
        exclude_tags=args.exclude_tags,
        exclude_items=args.exclude_items,
        recent_items=args.recent,
    )
    if args.json:
        return print_json(reply)
    print_recommendations(reply, f"Top {len(reply.items)} for user {args.user}")


def cmd_predict(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.predict_ratings(args.user, args.items)
    if args.json:
        return print_json(reply)
    rows = [
        (r.item_id, f"{r.rating:.2f}", f"{r.p_interact:.3f}", f"{r.p_positive:.3f}")
        for r in reply.ratings
    ]
    print(table(("item", "rating", "P(interact)", "P(rating>=4)"), rows))
    print(
        f"model {reply.model_version}" + ("  cold start" if reply.cold_start else "")
        + "  (P(interact) orders `recserve recommend`)"
    )  # fmt: skip


def cmd_similar(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.similar_items(
        args.item, args.k, include_tags=args.include_tags, exclude_tags=args.exclude_tags
    )
    if args.json:
        return print_json(reply)
    print(f"Items like {args.item}" + (f": {reply.title}" if reply.title else ""))
    print(items_table(reply.items))
    print(f"model {reply.model_version}")


def cmd_tags(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.recommend_tags(args.user, args.k)
    if args.json:
        return print_json(reply)
    print(table(("tag", "affinity"), [(t.tag, f"{t.affinity:.3f}") for t in reply.tags]))
    print(f"model {reply.model_version}" + ("  cold start" if reply.cold_start else ""))


def cmd_value(client: RecserveClient, args: argparse.Namespace) -> None:
    reply = client.score_users(args.users)
    if args.json:
        return print_json(reply)
    rows = [
        (v.user_id, common_pb2.Segment.Name(v.segment).removeprefix("SEGMENT_"),
         f"{v.p_active:.3f}", f"{v.expected_transactions:.2f}", amount(v),
         f"{v.horizon_weeks:g}")
        for v in reply.values
    ]  # fmt: skip
    headers = ("user", "segment", "P(active)", "E[active days]", "E[value]", "weeks")
    print(table(headers, rows))
    print(f"model {reply.model_version}")


def cmd_feedback(client: RecserveClient, args: argparse.Namespace) -> None:
    event = FeedbackEvent(
        args.user, args.item, args.type, args.rating or 0.0, args.value, args.timestamp
    )
    reply = client.feedback([event])
    if args.json:
        return print_json(reply)
    print(f"accepted {reply.accepted} event(s)")


# --- argument parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    security = make_security_options()
    client_opts = client_options(security)

    def client_cmd(name: str, func: Callable, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[client_opts], help=help_, formatter_class=HelpFormatter)
        p.set_defaults(func=func)
        return p

    def tag_filters(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--include-tags",
            type=csv,
            default=[],
            metavar="A,B",
            help="only items with one of these tags",
        )
        p.add_argument("--exclude-tags", type=csv, default=[], metavar="A,B",
                       help="no items with any of these tags")  # fmt: skip

    p = client_cmd("recommend", cmd_recommend, "top-k items for a user")
    p.add_argument("--user", required=True, help="user id (unknown ids get popular items)")
    p.add_argument("-k", type=int, default=10, help="number of items")
    tag_filters(p)
    p.add_argument("--exclude-items", type=csv, default=[], metavar="ID,ID",
                   help="never these items")  # fmt: skip
    p.add_argument("--recent", type=csv, default=[], metavar="ID,ID",
                   help="items just viewed (session context)")  # fmt: skip
    p.add_argument(
        "--include-seen",
        action="store_true",
        help="keep already-seen items (default: the dataset's; groceries keep them, films not)",
    )

    p = client_cmd("predict", cmd_predict, "predicted rating, P(interact) and P(rating>=4)")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--items", type=csv, required=True, metavar="ID,ID", help="item ids")

    p = client_cmd("similar", cmd_similar, "items similar to an item")
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("-k", type=int, default=10, help="number of items")
    tag_filters(p)

    p = client_cmd("tags", cmd_tags, "a user's interest tags")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("-k", type=int, default=5, help="number of tags")

    p = client_cmd("value", cmd_value, "value and propensity of users (unknown users: NEW)")
    p.add_argument("--users", type=csv, required=True, metavar="ID,ID", help="user ids")

    p = client_cmd("feedback", cmd_feedback, "send one event")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("--type", choices=sorted(EVENT_TYPES), default="view", help="event type")
    p.add_argument(
        "--rating",
        type=float,
        default=None,
        help="the rating, on the bundle's scale (required with --type rating)",
    )
    p.add_argument("--value", type=float, default=0.0, help="money spent (purchases)")
    p.add_argument("--timestamp", type=int, default=0, help="unix seconds; 0 = now")  # fmt: skip

    add_items_parser(client_cmd)
    add_run_commands(sub, security)
    add_bundle_commands(sub)
    add_data_commands(sub)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        getattr(args, "command", None) == "feedback"
        and args.type == "rating"
        and args.rating is None
    ):
        parser.error("--rating is required for rating events (--type rating)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `recserve ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a command ended by SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    if hasattr(args, "run"):
        return args.run(args)
    try:
        with client_from_args(args, args.target) as client:
            args.func(client, args)
    except grpc.RpcError as exc:
        print(f"recserve: {_explain(exc, args.target)}", file=sys.stderr)
        return 1
    except (ValueError, ConfigError, OSError) as exc:
        print(f"recserve: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()  # a closed pipe shows here, inside main's BrokenPipeError handler
    return 0


def _explain(exc: grpc.RpcError, target: str) -> str:
    """One line: the status and what to do about it."""
    code = exc.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        return (
            f"UNAVAILABLE: no gateway answers at {target}. Start one with `recserve serve` "
            "(or `make serve`), or point --target / $RECSERVE_TARGET at a running one."
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"DEADLINE_EXCEEDED: {target} did not answer in time (raise --timeout?)"
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return f"UNAUTHENTICATED: {exc.details()} (pass --api-key or set $RECSERVE_API_KEY)"
    details = " ".join((exc.details() or "").split())
    return f"{code.name}: {details}"


if __name__ == "__main__":
    sys.exit(main())
