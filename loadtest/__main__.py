"""python -m loadtest {run,step}: drive the recserve gateway and write JSON, Markdown and PNGs.

    python -m loadtest run  --launch embedded --artifacts artifacts --rate 300 --duration 20
    python -m loadtest step --target 127.0.0.1:50051 --bundle artifacts/LATEST-dir \
        --slo-p99-ms 50 --start 100 --factor 1.5 --max-rate 3000
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path

from loadtest import report
from loadtest.runner import LoadSpec, TrafficConfig, progress_printer, run
from loadtest.steps import find_max_rate, geometric_rates
from loadtest.targets import check_target
from loadtest.traffic import DEFAULT_MIX


def _deadlines(text: str) -> tuple[float, dict[str, float]]:
    """ "500" -> every kind 500 ms; "recommend=100,feedback=50" -> per kind (others 1000)."""
    if "=" not in text:
        return float(text), {}
    per = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in text.split(",") if p)}
    return 1000.0, per


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default="127.0.0.1:50051",
        help="gateway HOST:PORT, or gateway replicas as ipv4:HOST:PORT,HOST:PORT (calls spread "
        "round robin)",
    )
    common.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --target (never the default)",
    )
    common.add_argument(
        "--launch",
        choices=("split", "embedded"),
        help="start recserve from --artifacts on free loopback ports first",
    )
    common.add_argument("--artifacts", default="artifacts", help="bundle root (for --launch)")
    common.add_argument("--version", default="latest")
    common.add_argument(
        "--bundle",
        help="bundle dir for the user/item distribution "
        "(default: the launched or --artifacts/LATEST bundle if present)",
    )
    common.add_argument("--mix", default=DEFAULT_MIX)
    common.add_argument("--unknown-users", type=float, default=0.05)
    common.add_argument("-k", type=int, default=20)
    common.add_argument("--schedule", choices=("constant", "poisson"), default="poisson")
    common.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    common.add_argument("--warmup", type=float, default=3.0, help="seconds not counted")
    common.add_argument("--max-requests", type=int, default=2_000_000)
    common.add_argument("--max-in-flight", type=int, default=2000)
    common.add_argument("--processes", type=int, default=1, help="load generator processes")
    common.add_argument("--deadline-ms", default="1000", help='"1000" or "recommend=100,..."')
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--out", default="loadtest-results", help="output directory")
    common.add_argument("--no-plots", action="store_true")
    common.add_argument("--quiet", action="store_true", help="no progress line")

    p_run = sub.add_parser("run", parents=[common], help="one run at a fixed rate or concurrency")
    p_run.add_argument("--mode", choices=("open", "closed"), default="open")
    p_run.add_argument("--rate", type=float, default=200.0, help="open loop: requests/s")
    p_run.add_argument("--concurrency", type=int, default=8, help="closed loop: in flight")

    p_step = sub.add_parser("step", parents=[common], help="find the highest rate meeting a p99")
    p_step.add_argument("--slo-p99-ms", type=float, default=50.0)
    p_step.add_argument("--rates", help="explicit comma-separated rates")
    p_step.add_argument("--start", type=float, default=100.0)
    p_step.add_argument("--factor", type=float, default=1.5)
    p_step.add_argument("--max-rate", type=float, default=5000.0)
    p_step.add_argument("--refine", type=int, default=2, help="bisection steps after a failure")
    p_step.add_argument("--max-error-ratio", type=float, default=0.01)
    return parser


def _bundle_dir(args) -> str | None:
    if args.bundle:
        return args.bundle
    from services.contract.bundle import resolve_bundle_dir

    with contextlib.suppress(Exception):
        return str(resolve_bundle_dir(Path(args.artifacts), args.version))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.launch:
        try:  # a bad or remote --target: one usage line (exit 2), not a traceback
            check_target(args.target, allow_remote=args.allow_remote)
        except ValueError as exc:
            parser.error(str(exc))
    command = "python -m loadtest " + shlex.join(sys.argv[1:] if argv is None else argv)
    default_ms, per_kind = _deadlines(args.deadline_ms)
    out = Path(args.out)
    with contextlib.ExitStack() as stack:
        target = args.target
        if args.launch:
            from services.launcher import Launcher

            launcher = Launcher(
                args.artifacts, args.version, mode=args.launch, log_dir=out / "logs"
            )
            stack.enter_context(launcher)
            target = launcher.gateway_target
        spec = LoadSpec(
            target=target,
            allow_remote=args.allow_remote,
            mode=getattr(args, "mode", "open"),
            schedule=args.schedule,
            rate=getattr(args, "rate", 1.0),
            concurrency=getattr(args, "concurrency", 1),
            duration_s=args.duration,
            warmup_s=args.warmup,
            max_requests=args.max_requests,
            max_in_flight=args.max_in_flight,
            processes=args.processes,
            seed=args.seed,
            deadlines_ms=per_kind,
            default_deadline_ms=default_ms,
        )
        traffic = TrafficConfig(
            bundle_dir=_bundle_dir(args), mix=args.mix, unknown_users=args.unknown_users, k=args.k
        )
        progress = None if args.quiet else progress_printer(spec)
        if args.command == "run":
            result = run(spec, traffic, progress)
            summary = result.summary()
            report.write_json(
                {
                    "command": command,
                    "spec": report.spec_json(spec),
                    "traffic": traffic.__dict__,
                    **summary,
                },
                out / "result.json",
            )
            md = report.markdown_run(f"{spec.mode}-loop run against {target}", summary, command)
            if not args.no_plots:
                report.plot_run(summary, result.recorder, out / "latency.png", "recserve load")
        else:
            rates = (
                [float(r) for r in args.rates.split(",")]
                if args.rates
                else geometric_rates(args.start, args.factor, args.max_rate)
            )

            def on_step(s: dict) -> None:
                if not args.quiet:
                    lat = s["latency_ms"]
                    print(
                        f"\nstep {s['rate']:g}/s: p99 {lat.get('p99', 0):.2f} ms, answered "
                        f"{s['achieved_rps']:.0f}/s -> {s['verdict']}",
                        file=sys.stderr,
                    )

            steps = find_max_rate(
                spec,
                traffic,
                rates,
                args.slo_p99_ms,
                max_error_ratio=args.max_error_ratio,
                refine=args.refine,
                on_step=on_step,
            )
            recorders = steps.pop("_recorders")
            report.write_json(
                {
                    "command": command,
                    "spec": report.spec_json(spec),
                    "traffic": traffic.__dict__,
                    **steps,
                },
                out / "result.json",
            )
            md = report.markdown_steps(f"step schedule against {target}", steps, command)
            if not args.no_plots:
                report.plot_steps(steps, out / "steps.png", "p99 against offered rate")
                if steps["max_rate"] is not None:
                    best = next(s for s in steps["steps"] if s["rate"] == steps["max_rate"])
                    report.plot_run(
                        best,
                        recorders[steps["max_rate"]],
                        out / "latency.png",
                        f"best passing step: {steps['max_rate']:g} req/s",
                    )
    (out / "summary.md").write_text("# recserve load test\n\n" + md)
    print(
        f"\n{md}\nwrote {out}/result.json, {out}/summary.md"
        + ("" if args.no_plots else f", {out}/*.png")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
