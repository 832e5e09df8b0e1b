"""The `recserve` commands that run things here rather than call a gateway: `serve` (the
supervised services until Ctrl-C), `demo` (start, recommend once, stop) and `bundle`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

from recserve.demo_view import demo_user, show_buy_again
from recserve.display import print_recommendations, table
from recserve.options import HelpFormatter, client_from_args
from services.contract.bundle import resolve_bundle_dir
from services.contract.errors import ConfigError


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
        f"{policy.max_crashes} crashes in {policy.window_s:g}s); press Ctrl-C to stop",
        flush=True,
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
        client = client_from_args(args, launcher.gateway_target)
        launcher.start(timeout=args.start_timeout)
    except (LaunchError, ConfigError) as exc:
        print(f"recserve demo: {exc}\n(logs in {log_dir})", file=sys.stderr)
        return 1
    ports = ", ".join(f"{n}:{p}" for n, p in launcher.ports.items())
    print(f"started {len(launcher.ports)} services in {time.perf_counter() - start:.1f}s ({ports})")
    try:
        bundle_dir = resolve_bundle_dir(Path(args.artifacts), args.version)
        user = demo_user(bundle_dir, args.user)
        with client:
            t0 = time.perf_counter()
            reply = client.recommend(user, args.k)
            took_ms = (time.perf_counter() - t0) * 1e3
            print_recommendations(reply, f"Top {len(reply.items)} for user {user}")
            via = "every stage in-process" if args.mode == "embedded" else ", ".join(launcher.ports)
            print(f"answered in {took_ms:.1f} ms ({via})")
            show_buy_again(client, bundle_dir, user, args.k)
    except grpc.RpcError as exc:
        print(f"recserve demo: {exc.code().name}: {exc.details()}", file=sys.stderr)
        _report_exits(launcher.stop())
        return 1
    codes = launcher.stop()
    failed = _report_exits(codes)
    if not failed:
        print(f"stopped {len(codes)} services cleanly (logs in {log_dir})")
    return failed


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _report_exits(codes: dict[str, int]) -> int:
    bad = {name: code for name, code in codes.items() if code != 0}
    for name, code in bad.items():
        print(f"recserve: {name} exited with code {code}", file=sys.stderr)
    return 1 if bad else 0


def add_run_commands(sub, security: argparse.ArgumentParser) -> None:
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument(
        "--artifacts",
        default=os.environ.get("RECSERVE_ARTIFACTS", "artifacts"),
        metavar="DIR",
        help="bundles directory ($RECSERVE_ARTIFACTS)",
    )
    run_opts.add_argument("--version", default="latest", help="bundle version (or latest)")
    run_opts.add_argument(
        "--start-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds each service may take to report SERVING",
    )
    run_opts.add_argument(
        "--mode",
        choices=("split", "embedded"),
        default="split",
        help="split: five processes; embedded: one gateway, stages in-process",
    )

    p = sub.add_parser(
        "serve",
        parents=[run_opts],
        formatter_class=HelpFormatter,
        help="run and supervise the services until Ctrl-C",
    )
    p.add_argument(
        "--max-crashes",
        type=int,
        default=5,
        metavar="N",
        help="give up on a service after N crashes within --crash-window",
    )
    p.add_argument(
        "--crash-window",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds over which a service's crashes are counted",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "demo",
        parents=[run_opts, security],
        formatter_class=HelpFormatter,
        help="start the services, recommend once, stop them",
    )
    p.add_argument(
        "--user", default=None, help="user to recommend for (default: the bundle's most active)"
    )
    p.add_argument("-k", type=int, default=10, help="number of items")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds for the call")
    p.set_defaults(run=cmd_demo)  # fmt: skip


# --- bundle publishing (hot reload: services follow artifacts/LATEST) --------------------------


def add_bundle_commands(sub) -> None:
    bundle = sub.add_parser(
        "bundle", formatter_class=HelpFormatter, help="list, publish or roll back artifact bundles"
    )
    artifacts = os.environ.get("RECSERVE_ARTIFACTS", "artifacts")
    bundle.add_argument(
        "--artifacts",
        default=artifacts,
        metavar="DIR",
        help="bundles directory ($RECSERVE_ARTIFACTS)",
    )
    actions = bundle.add_subparsers(dest="action", required=True)
    # --artifacts after the action too (`recserve bundle list --artifacts DIR`): SUPPRESS keeps
    # the action's copy from overwriting one given before it.
    here = argparse.ArgumentParser(add_help=False)
    here.add_argument(
        "--artifacts",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"bundles directory ($RECSERVE_ARTIFACTS; default: {artifacts})",
    )
    actions.add_parser(
        "list", parents=[here], help="bundles under --artifacts, the live one marked"
    )
    p = actions.add_parser(
        "publish", parents=[here], help="validate a bundle directory and make it live"
    )
    p.add_argument("source", metavar="VERSION_DIR", help="a bundle directory (artifacts/<version>)")
    p = actions.add_parser(
        "rollback", parents=[here], help="make the previously live bundle live again"
    )
    p.add_argument(
        "--to", default=None, metavar="VERSION", help="this version instead of the previous one"
    )
    bundle.set_defaults(run=cmd_bundle)  # fmt: skip


def cmd_bundle(args: argparse.Namespace) -> int:
    from services.contract import publish as pub
    from services.contract.errors import BundleError

    artifacts = Path(args.artifacts)
    try:
        if args.action == "list":
            rows = [
                ("*" if b.latest else "", b.version, b.created_at)
                for b in pub.list_bundles(artifacts)
            ]
            print(table(("live", "version", "created_at"), rows))
        elif args.action == "publish":
            print(f"published {pub.publish(artifacts, Path(args.source)).version}")
        else:
            print(f"rolled back to {pub.rollback(artifacts, args.to).version}")
    except BundleError as exc:
        print(f"recserve bundle: refused: {exc}", file=sys.stderr)
        return 1
    return 0
