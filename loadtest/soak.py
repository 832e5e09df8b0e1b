"""Soak test: hours-long behaviour in minutes. The split stack at half its capacity, watched.

    python -m loadtest.soak --artifacts artifacts --seconds 600            # rate = capacity / 2
    python -m loadtest.soak --artifacts artifacts --seconds 600 --rate 150

Starts the five services as processes (services.launcher), finds the capacity with a short
step search (or takes --rate), warms up, then records each service's RSS, open file descriptors
and threads from /proc/<pid> at the start, every --sample-every seconds and at the end, while the
open-loop harness sends the usual mix (80 % Recommend, 15 % Feedback, 5 % PredictRatings).

Fails (exit 1) on any error, when a service's RSS grows by more than --rss-growth-pct AND
--rss-growth-mb after the warm-up, or when its fds / threads grow beyond a small slack.
Writes <out>/soak.json and <out>/soak.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from loadtest.runner import LoadSpec, TrafficConfig, run
from loadtest.steps import find_max_rate, geometric_rates
from loadtest.traffic import DEFAULT_MIX

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class SoakLimits:
    rss_growth_pct: float = 10.0  # fail when RSS grows by more than this percentage ...
    rss_growth_mb: float = 30.0  # ... and by more than this many MB (both)
    fd_slack: int = 4  # fds a service may gain over the run
    thread_slack: int = 2  # threads a service may gain over the run


@dataclass(frozen=True)
class SoakConfig:
    artifacts: str = "artifacts"
    version: str = "latest"
    seconds: float = 600.0
    rate: float | None = None  # None: half the capacity a step search finds
    warmup_s: float = 20.0
    sample_every_s: float = 10.0
    slo_p99_ms: float = 50.0  # capacity = highest step meeting this p99
    probe_start: float = 50.0
    probe_factor: float = 1.5
    probe_max_rate: float = 3000.0
    probe_step_s: float = 5.0
    deadline_ms: float = 1000.0
    mix: str = DEFAULT_MIX
    k: int = 20
    seed: int = 0
    out: str = "loadtest-results"
    limits: SoakLimits = field(default_factory=SoakLimits)


def proc_sample(pid: int) -> dict[str, int]:
    """RSS (kB), threads and open fds of one process, from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        rss_pages = int(f.read().split()[1])
    threads = len(os.listdir(f"/proc/{pid}/task"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kb": rss_pages * PAGE_KB, "threads": threads, "fds": fds}


class Sampler:
    """Samples every service's /proc figures in a thread until stopped."""

    def __init__(self, pids: dict[str, int], every_s: float) -> None:
        self.pids = pids
        self.every_s = every_s
        self.t0 = time.monotonic()
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def take(self) -> dict:
        sample = {"t_s": round(time.monotonic() - self.t0, 1)}
        sample.update({name: proc_sample(pid) for name, pid in self.pids.items()})
        self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.take()

    def __enter__(self) -> Sampler:
        self.take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.every_s + 5)
        self.take()


def judge(samples: list[dict], summary: dict, limits: SoakLimits) -> tuple[dict, list[str]]:
    """-> (per-service start/end figures, reasons the soak failed; empty when it passed)."""
    first, last = samples[0], samples[-1]
    services, failures = {}, []
    if summary["errors"] or summary["requests"] == 0:
        failures.append(f"{summary['errors']} errors in {summary['requests']} requests")
    for name in (k for k in first if k != "t_s"):
        a, b = first[name], last[name]
        grown_mb = (b["rss_kb"] - a["rss_kb"]) / 1024
        grown_pct = 100.0 * (b["rss_kb"] - a["rss_kb"]) / max(a["rss_kb"], 1)
        services[name] = {
            "rss_mb_start": round(a["rss_kb"] / 1024, 1),
            "rss_mb_end": round(b["rss_kb"] / 1024, 1),
            "rss_mb_max": round(max(s[name]["rss_kb"] for s in samples) / 1024, 1),
            "rss_growth_mb": round(grown_mb, 1),
            "rss_growth_pct": round(grown_pct, 2),
            "fds_start": a["fds"],
            "fds_end": b["fds"],
            "threads_start": a["threads"],
            "threads_end": b["threads"],
        }
        if grown_mb > limits.rss_growth_mb and grown_pct > limits.rss_growth_pct:
            failures.append(f"{name}: RSS grew {grown_mb:.1f} MB ({grown_pct:.1f} %)")
        if b["fds"] - a["fds"] > limits.fd_slack:
            failures.append(f"{name}: fds grew {a['fds']} -> {b['fds']}")
        if b["threads"] - a["threads"] > limits.thread_slack:
            failures.append(f"{name}: threads grew {a['threads']} -> {b['threads']}")
    return services, failures


def _capacity(spec: LoadSpec, traffic: TrafficConfig, cfg: SoakConfig, log) -> dict:
    rates = geometric_rates(cfg.probe_start, cfg.probe_factor, cfg.probe_max_rate)
    probe = replace(spec, duration_s=cfg.probe_step_s, warmup_s=1.0)
    found = find_max_rate(probe, traffic, rates, cfg.slo_p99_ms, refine=1)
    found.pop("_recorders")
    steps = [
        {k: s[k] for k in ("rate", "meets_slo", "verdict", "achieved_rps", "errors")}
        | {"p99_ms": s["latency_ms"].get("p99")}
        for s in found["steps"]
    ]
    for s in steps:
        log(f"probe {s['rate']:g}/s: p99 {s['p99_ms']} ms -> {s['verdict']}")
    if found["max_rate"] is None:
        raise RuntimeError(f"no probe step met p99 <= {cfg.slo_p99_ms} ms: {steps}")
    return {"capacity_rps": found["max_rate"], "slo_p99_ms": cfg.slo_p99_ms, "steps": steps}


def soak(cfg: SoakConfig, log=print) -> dict:
    """Launch, (probe,) warm up, soak; -> the result dict (also written to <out>/soak.json)."""
    from services.contract.bundle import resolve_bundle_dir
    from services.launcher import Launcher

    out = Path(cfg.out)
    bundle_dir = resolve_bundle_dir(Path(cfg.artifacts), cfg.version)
    traffic = TrafficConfig(bundle_dir=str(bundle_dir), mix=cfg.mix, k=cfg.k)
    launcher = Launcher(cfg.artifacts, cfg.version, mode="split", log_dir=out / "soak-logs")
    started = time.time()
    with launcher:
        pids = launcher.pids()
        spec = LoadSpec(
            target=launcher.gateway_target,
            rate=cfg.rate or cfg.probe_start,
            schedule="poisson",
            duration_s=cfg.seconds,
            warmup_s=0.0,
            default_deadline_ms=cfg.deadline_ms,
            seed=cfg.seed,
        )
        probe = None
        if cfg.rate is None:
            probe = _capacity(spec, traffic, cfg, log)
            spec = replace(spec, rate=round(probe["capacity_rps"] / 2, 1))
        log(f"warm-up: {cfg.warmup_s:g} s at {spec.rate:g}/s")
        run(replace(spec, duration_s=cfg.warmup_s, seed=cfg.seed + 1), traffic)
        log(f"soak: {cfg.seconds:g} s at {spec.rate:g}/s, sampling every {cfg.sample_every_s:g} s")
        with Sampler(pids, cfg.sample_every_s) as sampler:
            result = run(spec, traffic)
        exited = launcher.exited()
    summary = result.summary()
    services, failures = judge(sampler.samples, summary, cfg.limits)
    if exited:
        failures.append(f"services exited during the soak: {exited}")
    report = {
        "passed": not failures,
        "failures": failures,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "config": asdict(cfg),
        "bundle": str(bundle_dir),
        "rate_rps": spec.rate,
        "probe": probe,
        "requests": summary["requests"],
        "errors": summary["errors"],
        "status": summary["status"],
        "achieved_rps": summary["achieved_rps"],
        "latency_ms": summary["latency_ms"],
        "by_kind": summary["by_kind"],
        "services": services,
        "samples": sampler.samples,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "soak.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    lat = r["latency_ms"]
    cfg = r["config"]
    lines = [
        "# recserve soak",
        "",
        f"`{r.get('command', 'python -m loadtest.soak')}`",
        "",
        f"- verdict: **{'PASS' if r['passed'] else 'FAIL'}**"
        + ("" if r["passed"] else f" ({'; '.join(r['failures'])})"),
        f"- {cfg['seconds']:g} s at {r['rate_rps']:g} req/s offered (Poisson), mix {cfg['mix']}; "
        f"answered {r['achieved_rps']:g}/s; {r['requests']} requests, {r['errors']} errors "
        f"({r['status']})",
        f"- latency ms: p50 {lat.get('p50')}, p99 {lat.get('p99')}, max {lat.get('max')}",
    ]
    if r["probe"]:
        p = r["probe"]
        lines.append(
            f"- capacity {p['capacity_rps']:g} req/s (highest step with p99 <= "
            f"{p['slo_p99_ms']:g} ms); soak rate = half"
        )
    lines += [
        "",
        "| service | RSS start MB | RSS end MB | max MB | growth | fds start/end "
        "| threads start/end |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in r["services"].items():
        lines.append(
            f"| {name} | {s['rss_mb_start']} | {s['rss_mb_end']} | {s['rss_mb_max']} | "
            f"{s['rss_growth_mb']:+} MB ({s['rss_growth_pct']:+.1f} %) | "
            f"{s['fds_start']}/{s['fds_end']} | {s['threads_start']}/{s['threads_end']} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.soak", description=__doc__)
    d = SoakConfig()
    p.add_argument("--artifacts", default=d.artifacts)
    p.add_argument("--version", default=d.version)
    p.add_argument("--seconds", type=float, default=d.seconds, help="soak length (after warm-up)")
    p.add_argument("--rate", type=float, help="req/s (default: half the probed capacity)")
    p.add_argument("--warmup", type=float, default=d.warmup_s)
    p.add_argument("--sample-every", type=float, default=d.sample_every_s)
    p.add_argument("--slo-p99-ms", type=float, default=d.slo_p99_ms)
    p.add_argument("--probe-start", type=float, default=d.probe_start)
    p.add_argument("--probe-step-seconds", type=float, default=d.probe_step_s)
    p.add_argument("--deadline-ms", type=float, default=d.deadline_ms)
    p.add_argument("--mix", default=d.mix)
    p.add_argument("--rss-growth-pct", type=float, default=d.limits.rss_growth_pct)
    p.add_argument("--rss-growth-mb", type=float, default=d.limits.rss_growth_mb)
    p.add_argument("--fd-slack", type=int, default=d.limits.fd_slack)
    p.add_argument("--thread-slack", type=int, default=d.limits.thread_slack)
    p.add_argument("--out", default=d.out)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = SoakConfig(
        artifacts=args.artifacts,
        version=args.version,
        seconds=args.seconds,
        rate=args.rate,
        warmup_s=args.warmup,
        sample_every_s=args.sample_every,
        slo_p99_ms=args.slo_p99_ms,
        probe_start=args.probe_start,
        probe_step_s=args.probe_step_seconds,
        deadline_ms=args.deadline_ms,
        mix=args.mix,
        out=args.out,
        limits=SoakLimits(
            args.rss_growth_pct, args.rss_growth_mb, args.fd_slack, args.thread_slack
        ),
    )
    try:
        report = soak(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    except RuntimeError as exc:  # no probe step met the SLO: nothing to soak at
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    report["command"] = "python -m loadtest.soak " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = Path(cfg.out)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "soak.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
