"""The load engine: open loop (requests leave on a schedule whatever the server does) or closed
loop (N requests in flight, the next leaves when one returns), in one or several processes.

Open loop, coordinated omission: every request is timed from its *due* time, not from when it
actually left. When the server stalls, or `max_in_flight` is reached, or the generator itself
falls behind, the requests queued behind it carry that wait in their latency, exactly as a real
client with a fixed arrival rate would see it. The generator's own lateness is recorded apart
(`lag`), so a report can say when the generator, not the server, was the bottleneck.

Every run is bounded: duration <= MAX_DURATION_S and requests <= MAX_REQUESTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import grpc

from loadtest.recorder import Recorder, summary_ms
from loadtest.schedule import arrivals
from loadtest.targets import channel_options, check_target
from loadtest.traffic import DEFAULT_MIX, Population, Traffic, parse_mix
from recserve.v1 import gateway_pb2, gateway_pb2_grpc
from services.platform import heap
from services.platform.security import outgoing_channel_from_env

MAX_DURATION_S = 3600.0
MAX_REQUESTS = 20_000_000
DEFAULT_DEADLINE_MS = 1000.0
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrafficConfig:
    """What the requests look like (picklable: each worker process builds its own Traffic)."""

    bundle_dir: str | None = None  # real activity distribution; None = synthetic Zipf
    synthetic_users: int = 1000
    synthetic_items: int = 1000
    mix: str = DEFAULT_MIX
    unknown_users: float = 0.05
    k: int = 20

    def build(self, seed: int) -> Traffic:
        if self.bundle_dir:
            population = Population.from_bundle(Path(self.bundle_dir))
        else:
            population = Population.synthetic(self.synthetic_users, self.synthetic_items)
        return Traffic(
            population, parse_mix(self.mix), unknown_users=self.unknown_users, k=self.k, seed=seed
        )


@dataclass(frozen=True)
class LoadSpec:
    target: str
    mode: str = "open"  # open | closed
    schedule: str = "constant"  # constant | poisson (open loop)
    rate: float = 100.0  # requests/s, all processes together (open loop)
    concurrency: int = 8  # requests in flight, all processes together (closed loop)
    duration_s: float = 10.0  # measured part, after the warm-up
    warmup_s: float = 2.0  # sent and answered but not counted
    max_requests: int = 1_000_000  # hard bound, warm-up included
    max_in_flight: int = 2000  # open loop: beyond this, sends wait (and are timed from due)
    processes: int = 1
    seed: int = 0
    deadlines_ms: dict[str, float] = field(default_factory=dict)  # kind -> ms; default below
    default_deadline_ms: float = DEFAULT_DEADLINE_MS
    allow_remote: bool = False
    window_s: float = 1.0

    def __post_init__(self) -> None:
        check_target(self.target, allow_remote=self.allow_remote)
        if self.mode not in ("open", "closed"):
            raise ValueError(f"mode must be open or closed, got {self.mode!r}")
        if not 0 < self.duration_s + self.warmup_s <= MAX_DURATION_S or self.warmup_s < 0:
            raise ValueError(f"warm-up + duration must be in (0, {MAX_DURATION_S:.0f}] s")
        if not 0 < self.max_requests <= MAX_REQUESTS:
            raise ValueError(f"max_requests must be in 1..{MAX_REQUESTS}")
        if self.mode == "open" and self.rate <= 0:
            raise ValueError("open loop needs rate > 0")
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError("closed loop needs concurrency >= 1")
        if self.processes < 1 or self.max_in_flight < 1:
            raise ValueError("processes and max_in_flight must be >= 1")

    def deadline_s(self, kind: str) -> float:
        return self.deadlines_ms.get(kind, self.default_deadline_ms) / 1000.0

    def for_worker(self, index: int) -> tuple[LoadSpec, float]:
        """This worker's share of the load and its schedule phase (s)."""
        n = self.processes
        share = replace(
            self,
            processes=1,
            rate=self.rate / n,
            concurrency=max(1, self.concurrency // n + (index < self.concurrency % n)),
            max_requests=max(1, self.max_requests // n),
            max_in_flight=max(1, self.max_in_flight // n),
            seed=self.seed * 1000 + index,
        )
        return share, index / self.rate if self.mode == "open" else 0.0


@dataclass
class RunResult:
    spec: LoadSpec
    recorder: Recorder
    sent: int
    measured_s: float  # from the end of the warm-up to the last measured answer (>= duration)
    wall_s: float

    def summary(self) -> dict:
        rec = self.recorder
        count = rec.count
        ok = rec.ok_count()
        window = rec.window_s
        timeline = [{"t_s": w * window, **summary_ms(h)} for w, h in sorted(rec.windows.items())]
        return {
            "mode": self.spec.mode,
            "schedule": self.spec.schedule if self.spec.mode == "open" else "closed",
            "offered_rps": self.spec.rate if self.spec.mode == "open" else None,
            "concurrency": self.spec.concurrency if self.spec.mode == "closed" else None,
            # due in the measured window / its length (poisson: varies around offered_rps)
            "scheduled_rps": round(count / self.spec.duration_s, 1),
            # answered / (end of warm-up -> last answer): below scheduled when answers lag
            "achieved_rps": round(count / self.measured_s, 1) if self.measured_s else 0.0,
            "ok_rps": round(ok / self.measured_s, 1) if self.measured_s else 0.0,
            "requests": count,
            "errors": count - ok,
            "error_ratio": round((count - ok) / count, 5) if count else 0.0,
            "sent": self.sent,
            "warmup_requests": rec.warmup_count,
            "measured_s": round(self.measured_s, 3),
            "wall_s": round(self.wall_s, 3),
            "latency_ms": summary_ms(rec.latency),
            "generator_lag_ms": summary_ms(rec.lag),
            "by_kind": {k: summary_ms(h) for k, h in sorted(rec.by_kind.items())},
            "status": dict(sorted(rec.status.items())),
            "timeline": timeline,
        }


# --- one worker: an asyncio loop, one channel ----------------------------------------------


async def _call(stub, method: str, request, deadline_s: float) -> str:
    try:
        await getattr(stub, method)(request, timeout=deadline_s)
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


class _Unparsed:
    """The gateway's methods as attributes (like GatewayStub) whose answers stay bytes: the
    harness reads only a call's status, so it does not spend the CPU it shares with the server
    under test (and the latency it times) on parsing answers it never reads."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name in Traffic.METHODS.values():
            call = channel.unary_unary(
                f"/{gateway_pb2.DESCRIPTOR.package}.Gateway/{name}",
                request_serializer=_serialize,
                response_deserializer=None,
            )
            setattr(self, name, call)


def _serialize(message) -> bytes:
    return message.SerializeToString()


class _Worker:
    # A subclass that reads the answers (loadtest.fault: their fallback flags) sets this.
    parse_replies = False

    def __init__(self, spec: LoadSpec, traffic: Traffic, phase_s: float, progress: Progress | None):
        self.spec = spec
        self.traffic = traffic
        self.phase_s = phase_s
        self.progress = progress
        self.rec = Recorder(warmup_s=spec.warmup_s, window_s=spec.window_s)
        self.sent = 0
        self.done = 0
        self.errors = 0
        self.in_flight = 0
        self.last_done = 0.0
        self.start = 0.0

    async def _one(self, stub, due: float) -> None:
        kind, method, request = self.traffic.next()
        sent = time.perf_counter()
        self.sent += 1
        self.in_flight += 1
        status = await _call(stub, method, request, self.spec.deadline_s(kind))
        done = time.perf_counter()
        self.in_flight -= 1
        self.done += 1
        self.errors += status != "OK"
        self.rec.record(due - self.start, done - due, status, kind, sent - due)
        if due - self.start >= self.spec.warmup_s:
            self.last_done = max(self.last_done, done - self.start)

    async def _open(self, stub) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        total = spec.warmup_s + spec.duration_s
        times = arrivals(
            spec.schedule,
            spec.rate,
            total,
            max_count=spec.max_requests,
            seed=spec.seed,
            phase_s=self.phase_s,
        )
        slots = asyncio.Semaphore(spec.max_in_flight)
        tasks: set[asyncio.Task] = set()

        async def one(due: float) -> None:
            try:
                await self._one(stub, due)
            finally:
                slots.release()

        for offset in times.tolist():
            due = self.start + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()  # a full window delays the send; latency still runs from due
            task = loop.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _closed(self, stub) -> None:
        end = self.start + self.spec.warmup_s + self.spec.duration_s
        budget = [self.spec.max_requests]

        async def client() -> None:
            while time.perf_counter() < end and budget[0] > 0:
                budget[0] -= 1
                await self._one(stub, time.perf_counter())  # closed loop: due = when it leaves

        await asyncio.gather(*(client() for _ in range(self.spec.concurrency)))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.progress is not None:
                self.progress(self.snapshot(time.perf_counter() - self.start))

    def snapshot(self, t: float) -> dict:
        return {
            "t": t,
            "sent": self.sent,
            "done": self.done,
            "errors": self.errors,
            "in_flight": self.in_flight,
        }

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        # No full collection of the harness's own heap mid-run (services.platform.heap)
        with heap.frozen():
            await self._run(ready)

    async def _run(self, ready: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        target = self.spec.target
        # TLS and API key from RECSERVE_TLS_CA/_CLIENT_CERT/_CLIENT_KEY and RECSERVE_API_KEY.
        async with outgoing_channel_from_env(target, options=channel_options(target)) as channel:
            with contextlib.suppress(asyncio.TimeoutError):  # a dead target shows as errors
                await asyncio.wait_for(channel.channel_ready(), 3.0)
            if ready is not None:
                await loop.run_in_executor(None, ready)
            parsed = self.parse_replies
            stub = gateway_pb2_grpc.GatewayStub(channel) if parsed else _Unparsed(channel)
            self.start = time.perf_counter() + 0.005
            reporter = loop.create_task(self._report())
            try:
                await (self._open(stub) if self.spec.mode == "open" else self._closed(stub))
            finally:
                reporter.cancel()


def _measured_s(spec: LoadSpec, last_done: float) -> float:
    return max(spec.duration_s, last_done - spec.warmup_s)


# --- in-process and multi-process entry points ----------------------------------------------


async def run_async(
    spec: LoadSpec, traffic: Traffic | TrafficConfig, progress: Progress | None = None
) -> RunResult:
    """One worker on the running loop (tests; small loads)."""
    if spec.processes != 1:
        raise ValueError("run_async runs one worker; use run() for several processes")
    if isinstance(traffic, TrafficConfig):
        traffic = traffic.build(spec.seed)
    t0 = time.monotonic()
    worker = _Worker(spec, traffic, 0.0, progress)
    await worker.run()
    return RunResult(
        spec, worker.rec, worker.sent, _measured_s(spec, worker.last_done), time.monotonic() - t0
    )


def _worker_main(spec: LoadSpec, traffic: TrafficConfig, index: int, out, go) -> None:
    share, phase = spec.for_worker(index)

    def progress(snap: dict) -> None:
        out.put(("progress", index, snap))

    def ready() -> None:
        out.put(("ready", index, None))
        go.wait(60.0)

    worker = _Worker(share, traffic.build(share.seed), phase, progress)
    asyncio.run(worker.run(ready))
    out.put(
        (
            "result",
            index,
            {"recorder": worker.rec.to_dict(), "sent": worker.sent, "last_done": worker.last_done},
        )
    )


def run(spec: LoadSpec, traffic: TrafficConfig, progress: Progress | None = None) -> RunResult:
    """Run the load in spec.processes worker processes (1 = in this process) and merge."""
    t0 = time.monotonic()
    if spec.processes == 1:
        return asyncio.run(run_async(spec, traffic, progress))
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_worker_main, args=(spec, traffic, i, out, go), daemon=True)
        for i in range(spec.processes)
    ]
    for p in procs:
        p.start()
    longest_deadline_s = max([spec.default_deadline_ms, *spec.deadlines_ms.values()]) / 1000
    limit = time.monotonic() + 120.0 + spec.warmup_s + spec.duration_s + 2 * longest_deadline_s
    ready, results, snaps = 0, {}, {}
    try:
        while len(results) < spec.processes:
            if time.monotonic() > limit:
                raise TimeoutError("load workers did not finish in time")
            try:
                what, index, payload = out.get(timeout=0.5)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a load worker exited with code {dead[0]}") from None
                continue
            if what == "ready":
                ready += 1
                if ready == spec.processes:
                    go.set()
            elif what == "progress":
                snaps[index] = payload
                if progress is not None and len(snaps) == spec.processes:
                    progress(
                        {
                            k: sum(s[k] for s in snaps.values())
                            if k != "t"
                            else max(s["t"] for s in snaps.values())
                            for k in payload
                        }
                    )
            else:
                results[index] = payload
    finally:
        for p in procs:
            p.join(5.0)
            if p.is_alive():
                p.terminate()
    recorder = Recorder(warmup_s=spec.warmup_s, window_s=spec.window_s)
    for payload in results.values():
        recorder.merge(Recorder.from_dict(payload["recorder"]))
    last_done = max(p["last_done"] for p in results.values())
    sent = sum(p["sent"] for p in results.values())
    return RunResult(spec, recorder, sent, _measured_s(spec, last_done), time.monotonic() - t0)


def progress_printer(spec: LoadSpec, stream=sys.stderr) -> Progress:
    """A one-line progress display (rewritten in place on a terminal)."""
    total = spec.warmup_s + spec.duration_s
    tty = stream.isatty()
    last = {"done": 0, "t": 0.0}

    def show(snap: dict) -> None:
        dt = max(snap["t"] - last["t"], 1e-9)
        rps = (snap["done"] - last["done"]) / dt
        last.update(done=snap["done"], t=snap["t"])
        phase = "warm-up" if snap["t"] < spec.warmup_s else "measuring"
        line = (
            f"[{min(snap['t'], total):6.1f}/{total:.0f}s {phase}] sent {snap['sent']}  "
            f"answered {snap['done']} ({rps:.0f}/s)  errors {snap['errors']}  "
            f"in flight {snap['in_flight']}"
        )
        stream.write(("\r" + line + "\x1b[K") if tty else line + "\n")
        stream.flush()

    return show


def spec_dict(spec: LoadSpec) -> dict:
    return asdict(spec)
