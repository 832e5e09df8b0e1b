"""Fault injection under load: kill -9 one backend at a time, restart it, watch the gateway.

    python -m loadtest.fault --artifacts artifacts --rate 50 --down 5 \
        --backends feature,retrieval,ranking,uservalue --out loadtest-results

Starts the split stack under the supervisor of `recserve serve` (services.launcher with a
RestartPolicy: five processes on loopback), drives the gateway with the open-loop harness
(loadtest.runner) at a fixed rate with a Recommend-heavy mix that includes Feedback, and per
backend: `settle` seconds of normal traffic, SIGKILL, and the supervisor restarts it on its port
by itself after `down` seconds (its first backoff), then `recover` seconds of observation after
it reports SERVING. The gateway is never restarted.

Per phase it reports requests, failed requests by status, fallback flags, and the recovery time:
from the restarted backend reporting SERVING (and from its spawn) to the last answer still
flagged with that stage's fallback. It passes when, outside a short window around each kill
(requests due within `--kill-window` seconds either side of the SIGKILL: calls in flight at that
moment may fail), fewer than `--max-failure-ratio` (0.1 %) of requests failed, every phase
recovered (un-flagged answers for its last `--clean-tail` seconds), and the gateway process is
the one started at the beginning. Writes <out>/fault.json and <out>/fault.md; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from loadtest import report
from loadtest.runner import LoadSpec, TrafficConfig, _Worker
from services.launcher import BACKENDS, Launcher, RestartPolicy, free_port

MIX = "recommend=0.85,feedback=0.15"
STAGE_FLAG = {"feature": "features", "retrieval": "retrieval", "ranking": "ranking",
              "uservalue": "uservalue"}  # fmt: skip


@dataclass(frozen=True)
class FaultPlan:
    backends: tuple[str, ...] = BACKENDS
    rate: float = 50.0
    warmup_s: float = 3.0
    settle_s: float = 3.0  # normal traffic before the kill
    down_s: float = 5.0  # dead before the restart starts
    restart_budget_s: float = 10.0  # time a phase allows the restarted process to be SERVING
    recover_s: float = 8.0  # observed after SERVING
    kill_window_s: float = 1.0
    clean_tail_s: float = 2.0
    max_failure_ratio: float = 0.001
    deadline_ms: float = 1000.0
    mix: str = MIX
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.backends) - set(BACKENDS)
        if unknown or not self.backends:
            raise ValueError(f"backends must be among {', '.join(BACKENDS)}: {unknown}")
        if self.recover_s <= self.clean_tail_s:
            raise ValueError("recover_s must exceed clean_tail_s")

    @property
    def phase_s(self) -> float:
        return self.settle_s + self.down_s + self.restart_budget_s + self.recover_s

    @property
    def load_s(self) -> float:
        return len(self.backends) * self.phase_s + 1.0


@dataclass
class Phase:
    backend: str
    start: float
    kill: float = 0.0
    restart: float = 0.0
    healthy: float = 0.0
    end: float = 0.0
    metrics: dict = field(default_factory=dict)


class _FaultWorker(_Worker):
    """The open-loop worker, also keeping every answer's (due, done, kind, status, fallbacks)."""

    parse_replies = True  # the fallback flags of each answer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[tuple[float, float, str, str, tuple[str, ...]]] = []

    async def _one(self, stub, due: float) -> None:
        kind, method, request = self.traffic.next()
        sent = time.perf_counter()
        self.sent += 1
        self.in_flight += 1
        flags: tuple[str, ...] = ()
        try:
            reply = await getattr(stub, method)(request, timeout=self.spec.deadline_s(kind))
            status = "OK"
            flags = tuple(getattr(reply, "fallbacks", ()))
        except grpc.aio.AioRpcError as exc:
            status = exc.code().name
        done = time.perf_counter()
        self.in_flight -= 1
        self.done += 1
        self.errors += status != "OK"
        self.rec.record(due - self.start, done - due, status, kind, sent - due)
        self.answers.append((due - self.start, done - self.start, kind, status, flags))


def scrape(port: int) -> dict[str, float]:
    """The gateway's recserve_* series as {"name{labels}": value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("recserve_") and not s.name.endswith("_created"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


async def _restarted(launcher: Launcher, name: str, restarts: int, timeout: float) -> float:
    """Until the supervisor has started `name` again (its restart count passes `restarts`) ->
    the perf_counter time it saw that; then until the new process reports SERVING (the supervisor
    probes it without a gRPC client in this process: the load's aio calls are not stalled)."""
    deadline = time.monotonic() + timeout
    restarted = None
    while time.monotonic() < deadline:
        status = launcher.status()[name]
        if restarted is None and status.restarts > restarts:
            restarted = time.perf_counter()
        if status.state == "failed":
            raise RuntimeError(f"the supervisor gave up on {name}:\n{launcher.log_tail(name)}")
        if restarted is not None and status.state == "serving":
            return restarted
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{name} not SERVING again after {timeout:.0f} s")


async def _choreography(launcher: Launcher, worker: _FaultWorker, plan: FaultPlan, metrics_port):
    while worker.start == 0.0:
        await asyncio.sleep(0.01)

    def now() -> float:
        return time.perf_counter() - worker.start

    async def until(t: float) -> None:
        await asyncio.sleep(max(0.0, t - now()))

    phases: list[Phase] = []
    t = plan.warmup_s
    for name in plan.backends:
        phase = Phase(name, start=t)
        phases.append(phase)
        await until(t + plan.settle_s)
        restarts = launcher.status()[name].restarts
        phase.kill = now()
        launcher.kill(name, signal.SIGKILL)  # the supervisor restarts it after `down_s`
        budget = plan.down_s + plan.restart_budget_s + 30
        restarted = await _restarted(launcher, name, restarts, budget)
        phase.restart = restarted - worker.start
        phase.healthy = now()
        await until(max(phase.healthy + plan.recover_s, t + plan.phase_s))
        phase.end = t = now()
        if metrics_port:
            phase.metrics = await asyncio.to_thread(scrape, metrics_port)
    return phases


def _metrics_up(port: int) -> bool:
    try:
        return bool(scrape(port))
    except OSError:
        return False


def analyse(phases: list[Phase], answers: list, plan: FaultPlan, load_end: float) -> dict:
    results = []
    for i, ph in enumerate(phases):
        end = phases[i + 1].start if i + 1 < len(phases) else load_end
        mine = [a for a in answers if ph.start <= a[0] < end]
        near = [a for a in mine if abs(a[0] - ph.kill) <= plan.kill_window_s]
        outside = [a for a in mine if abs(a[0] - ph.kill) > plan.kill_window_s]
        failed_out = Counter(f"{a[2]}/{a[3]}" for a in outside if a[3] != "OK")
        failed_near = Counter(f"{a[2]}/{a[3]}" for a in near if a[3] != "OK")
        prefix = STAGE_FLAG[ph.backend] + "_"
        flags = Counter(f for a in mine for f in a[4])
        flagged = [a for a in mine if a[3] == "OK" and any(f.startswith(prefix) for f in a[4])]
        last_flagged = max((a[1] for a in flagged if a[0] >= ph.kill), default=None)
        clean_after = [
            a
            for a in mine
            if a[2] == "recommend" and a[3] == "OK" and a[0] > (last_flagged or ph.healthy)
        ]
        recovered = (last_flagged is None or end - last_flagged >= plan.clean_tail_s) and bool(
            clean_after
        )
        n_out = len(outside)
        ratio = sum(failed_out.values()) / n_out if n_out else 0.0
        results.append(
            {
                "backend": ph.backend,
                "window_s": [round(ph.start, 3), round(end, 3)],
                "kill_at_s": round(ph.kill, 3),
                "restart_at_s": round(ph.restart, 3),
                "serving_at_s": round(ph.healthy, 3),
                "restart_to_serving_s": round(ph.healthy - ph.restart, 3),
                "requests": len(mine),
                "requests_near_kill": len(near),
                "failed_near_kill": dict(failed_near),
                "requests_outside_kill_window": n_out,
                "failed_outside_kill_window": dict(failed_out),
                "failure_ratio_outside": round(ratio, 6),
                "fallback_flags": dict(sorted(flags.items())),
                "flagged_answers": len(flagged),
                "unflagged_after_serving_s": None
                if last_flagged is None
                else round(max(0.0, last_flagged - ph.healthy), 3),
                "unflagged_after_restart_s": None
                if last_flagged is None
                else round(max(0.0, last_flagged - ph.restart), 3),
                "recovered": recovered,
                "passed": ratio < plan.max_failure_ratio and recovered,
                "gateway_metrics": ph.metrics,
            }
        )
    return {"phases": results, "timeline": timeline(answers)}


def timeline(answers: list) -> list[dict]:
    """Per second of due time: requests, failed, flagged answers, p99 latency (ms)."""
    by_second: dict[int, list] = {}
    for a in answers:
        by_second.setdefault(int(a[0]), []).append(a)
    rows = []
    for second, group in sorted(by_second.items()):
        latencies = sorted(a[1] - a[0] for a in group)
        rows.append(
            {
                "t_s": second,
                "requests": len(group),
                "failed": sum(a[3] != "OK" for a in group),
                "flagged": sum(bool(a[4]) for a in group),
                "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
            }
        )
    return rows


def run_fault(
    artifacts: Path | str,
    plan: FaultPlan,
    *,
    version: str = "latest",
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    from services.contract.bundle import resolve_bundle_dir

    # The gateway's /metrics is scraped per phase: its own free port, or, with a base port
    # (RECSERVE_METRICS_PORT in env), the base (every process then serves one: base + offset).
    base = int((env or {}).get("RECSERVE_METRICS_PORT") or 0)
    metrics_port = base or free_port()
    launcher = Launcher(
        artifacts,
        version,
        mode="split",
        log_dir=log_dir,
        # Crashes are restarted by the supervisor (as under `recserve serve`), `down_s` after.
        restart=RestartPolicy(backoff_s=plan.down_s, max_backoff_s=max(plan.down_s, 1.0)),
        # The availability-first setting: feedback is held in the gateway while the feature
        # service is down (acknowledged before it is durable; off by default).
        env={
            **({} if base else {"RECSERVE_GATEWAY_METRICS_PORT": str(metrics_port)}),
            "RECSERVE_GATEWAY_FEEDBACK_SPOOL": "10000",
            **(env or {}),
        },
    )
    t0 = time.monotonic()
    load_before = os.getloadavg()
    launcher.start()
    try:
        gateway_pid = launcher.pids()["gateway"]
        spec = LoadSpec(
            target=launcher.gateway_target,
            rate=plan.rate,
            duration_s=plan.load_s,
            warmup_s=plan.warmup_s,
            default_deadline_ms=plan.deadline_ms,
            seed=plan.seed,
            schedule="constant",
        )
        bundle_dir = str(resolve_bundle_dir(Path(artifacts), version))
        traffic = TrafficConfig(bundle_dir=bundle_dir, mix=plan.mix).build(plan.seed)
        worker = _FaultWorker(spec, traffic, 0.0, None)

        async def go():
            choreo = asyncio.ensure_future(_choreography(launcher, worker, plan, metrics_port))
            await worker.run()
            return await choreo

        phases = asyncio.run(go())
        same_gateway = launcher.pids().get("gateway") == gateway_pid
        exited = launcher.exited()
        restarts = {name: s.restarts for name, s in launcher.status().items()}
        metrics_up = sorted(n for n, port in launcher.metrics_ports.items() if _metrics_up(port))
    finally:
        launcher.stop()
    load_end = plan.warmup_s + plan.load_s
    result = analyse(phases, worker.answers, plan, load_end)
    summary = {
        "requests": sum(p["requests"] for p in result["phases"]),
        "failed": sum(
            sum(p["failed_near_kill"].values()) + sum(p["failed_outside_kill_window"].values())
            for p in result["phases"]
        ),
        # The warm-up (first calls open the gateway's channels) is not part of any phase.
        "warmup_requests": sum(a[0] < plan.warmup_s for a in worker.answers),
        "warmup_failed": sum(a[0] < plan.warmup_s and a[3] != "OK" for a in worker.answers),
        "gateway_restarted": not same_gateway,
        "exited_during_run": exited,
        "restarts": restarts,  # by the supervisor, per service
        "metrics_ports": launcher.metrics_ports,
        "metrics_up": metrics_up,  # processes whose /metrics answered at the end
        "wall_s": round(time.monotonic() - t0, 1),
        # The machine's 1/5/15-min load averages before and after: others' jobs starve ours.
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    passed = same_gateway and all(p["passed"] for p in result["phases"])
    return {"plan": asdict(plan), "passed": passed, **summary, **result}


def markdown(result: dict, command: str) -> str:
    plan = result["plan"]
    lines = [
        "## Fault injection: kill -9 one backend at a time under load",
        "",
        f"Command: `{command}`",
        "",
        f"Open-loop constant {plan['rate']:g} req/s, mix `{plan['mix']}`, client deadline "
        f"{plan['deadline_ms']:g} ms; each backend killed after {plan['settle_s']:g} s, dead "
        f"{plan['down_s']:g} s, then restarted on its port by the supervisor. Kill window = "
        f"requests due within ±{plan['kill_window_s']:g} s of the SIGKILL. Gateway restarted: "
        f"{result['gateway_restarted']}. Result: **{'PASS' if result['passed'] else 'FAIL'}**.",
        "",
        "| backend | requests | failed near kill | failed outside (ratio) | restart→SERVING s "
        "| un-flagged after SERVING s | fallback flags | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        failed_out = sum(p["failed_outside_kill_window"].values())
        flags = ", ".join(f"{k} {v}" for k, v in p["fallback_flags"].items()) or "–"
        near = ", ".join(f"{k} {v}" for k, v in p["failed_near_kill"].items()) or "0"
        lines.append(
            f"| {p['backend']} | {p['requests']} | {near} | {failed_out} "
            f"({p['failure_ratio_outside']:.4%}) | {p['restart_to_serving_s']:.2f} "
            f"| {report.fmt(p['unflagged_after_serving_s'])} | {flags} "
            f"| {'yes' if p['passed'] else 'NO'} |"
        )
    lines += [
        "",
        f"Total {result['requests']} requests in the phases, {result['failed']} failed "
        f"(warm-up, not counted: {result['warmup_requests']} requests, "
        f"{result['warmup_failed']} failed), wall "
        f"{result['wall_s']} s. Machine: {result['cpus']} CPUs, load average (1/5/15 min) "
        f"{result['loadavg_before']} before, {result['loadavg_after']} after. "
        f"Service env: {result.get('env') or 'defaults'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.fault",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--down", type=float, default=5.0)
    parser.add_argument("--restart-budget", type=float, default=10.0)
    parser.add_argument("--recover", type=float, default=8.0)
    parser.add_argument("--kill-window", type=float, default=1.0)
    parser.add_argument("--max-failure-ratio", type=float, default=0.001)
    parser.add_argument("--mix", default=MIX)
    parser.add_argument("--out", default="loadtest-results")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the services (repeatable)"
    )
    args = parser.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    plan = FaultPlan(
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
        rate=args.rate,
        settle_s=args.settle,
        down_s=args.down,
        restart_budget_s=args.restart_budget,
        recover_s=args.recover,
        kill_window_s=args.kill_window,
        max_failure_ratio=args.max_failure_ratio,
        mix=args.mix,
    )
    out = Path(args.out)
    command = "python -m loadtest.fault " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = run_fault(
        args.artifacts, plan, version=args.version, log_dir=out / "fault-logs", env=env
    )
    result["env"] = env
    result["command"] = command
    report.write_json(result, out / "fault.json")
    md = markdown(result, command)
    (out / "fault.md").write_text("# recserve fault injection\n\n" + md)
    print(f"\n{md}\nwrote {out}/fault.json, {out}/fault.md")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
