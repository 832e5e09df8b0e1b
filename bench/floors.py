"""Serving floors, measured in the same run as the systems: what one gRPC call costs with no
work in it, what the real gateway costs with no models in it, and the targets that follow.

  - echo: a bare grpc.aio unary server (bytes in, the same bytes out; no interceptors, no
    protobuf), its own process; one call in flight, closed loop: p50/p99 and the server's CPU
    per call (user + system time of its process, /proc, as bench.cpu_share reads it);
  - noop_gateway: the real gateway servicer (services.gateway.servicer.register) behind the real
    server and interceptors (services.platform.server.create_server) over canned stages
    (bench.canned_stages), its own process; Recommend driven by the load harness, one in flight;
  - embedded_closed_loop: one real embedded gateway process (bench.topology), same driver.

The load generator runs in this process; its CPU per request is read over the same window.
`targets()` turns these, the in-process stage costs (bench.stages) and the step-schedule results
into the issue's ratios with PASS/FAIL.

Servers (started by measure_floors, each prints "port N" once it listens):
    python -m bench.floors echo --port 0
    python -m bench.floors noop-gateway --port 0 --bundle DIR [--candidates 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from bench.cpu_share import cpu_seconds

ECHO_SERVICE = "bench.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"
FLOOR_OVERHEAD_MS = 0.3  # the allowance over pipeline + one echo hop


# --- the servers ------------------------------------------------------------------------------


async def _serve_echo(port: int) -> None:
    async def echo(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"port {bound}", flush=True)
    await server.wait_for_termination()


async def _serve_noop_gateway(port: int, bundle_dir: str, candidates: int) -> None:
    from bench.canned_stages import canned_pipeline
    from services.contract.bundle import Bundle
    from services.gateway.servicer import SERVICE_NAME, register
    from services.platform.server import create_server

    pipeline = canned_pipeline(Bundle.load(Path(bundle_dir), verify=False), candidates)
    server, bound = await create_server(register(pipeline), port=port, service_names=[SERVICE_NAME])
    print(f"port {bound}", flush=True)
    await server.wait_for_termination()


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, timeout_s: float = 120.0) -> Iterator[tuple[int, str]]:
    """Start a server process that prints "port N" when it listens -> (pid, "127.0.0.1:N");
    stopped (SIGTERM, then SIGKILL) on exit. Its stderr goes to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            port = _read_port(proc, timeout_s, log_path)
            yield proc.pid, f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def _read_port(proc: subprocess.Popen, timeout_s: float, log_path: Path) -> int:
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if sel.select(min(left, 0.5)):
                line = proc.stdout.readline()
                if line.startswith("port "):
                    return int(line.split()[1])
                if line:
                    continue
            if proc.poll() is not None:
                tail = log_path.read_text()[-2000:]
                raise RuntimeError(
                    f"{proc.args} exited ({proc.returncode}) before listening:\n{tail}"
                )
    raise TimeoutError(f"{proc.args} did not listen within {timeout_s:g} s")


# --- the closed loops -------------------------------------------------------------------------


def _latency(seconds: list[float] | np.ndarray) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
    }


async def echo_closed_loop(
    target: str, server_pid: int, duration_s: float, warmup_s: float, payload_bytes: int = 64
) -> dict:
    """One echo call in flight for duration_s (after warmup_s): latency, and CPU per call of
    the server process and of this one (the client)."""
    payload = b"x" * payload_bytes
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10.0)
        echo = channel.unary_unary(ECHO_METHOD)  # no serializers: bytes both ways
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            await echo(payload, timeout=5.0)
        samples: list[float] = []
        server0, client0 = cpu_seconds(server_pid), cpu_seconds(os.getpid())
        end = time.perf_counter() + duration_s
        while (t0 := time.perf_counter()) < end:
            await echo(payload, timeout=5.0)
            samples.append(time.perf_counter() - t0)
        server1, client1 = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    n = len(samples)
    return {
        "calls": n,
        "payload_bytes": payload_bytes,
        **_latency(samples),
        "server_cpu_ms_per_call": round((server1 - server0) / n * 1000, 4),
        "client_cpu_ms_per_call": round((client1 - client0) / n * 1000, 4),
    }


async def recommend_closed_loop(
    target: str, pids: dict[str, int], traffic, duration_s: float, warmup_s: float
) -> dict:
    """Recommend, one request in flight, driven by the load harness (loadtest.runner) in this
    process: latency, CPU per request of each server process and of the load generator.
    `traffic` is a built loadtest.traffic.Traffic (built before the CPU window opens)."""
    from loadtest.runner import LoadSpec, run_async

    spec = LoadSpec(
        target=target,
        mode="closed",
        concurrency=1,
        duration_s=duration_s,
        warmup_s=warmup_s,
        processes=1,
        seed=3,
    )
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    me0 = cpu_seconds(os.getpid())
    result = await run_async(spec, traffic)
    me1 = cpu_seconds(os.getpid())
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    s = result.summary()
    sent = max(result.sent, 1)  # the CPU window spans warm-up and measured requests
    lat = s["latency_ms"]
    return {
        "requests": s["requests"],
        "errors": s["errors"],
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "mean_ms": lat.get("mean"),
        "server_cpu_ms_per_request": {
            name: round((after[name] - before[name]) / sent * 1000, 4) for name in pids
        },
        "load_generator_cpu_ms_per_request": round((me1 - me0) / sent * 1000, 4),
    }


def measure_floors(
    bundle_dir: Path,
    traffic_config,
    log_dir: Path,
    *,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    candidates: int = 200,
    payload_bytes: int = 64,
    embedded: tuple[Path, str] | None = None,
    log=lambda msg: None,
) -> dict:
    """echo, noop_gateway and (when `embedded` = (artifacts, version)) embedded_closed_loop,
    one after another on loopback."""
    traffic = traffic_config.build(3)
    out: dict = {"duration_s": duration_s, "warmup_s": warmup_s}
    me = [sys.executable, "-m", "bench.floors"]
    log("floor: bare grpc.aio echo, one call in flight")
    with serving([*me, "echo", "--port", "0"], log_dir / "echo.log") as (pid, target):
        out["echo"] = asyncio.run(
            echo_closed_loop(target, pid, duration_s, warmup_s, payload_bytes)
        )
    log("floor: no-op gateway (real servicer + server, canned stages), one in flight")
    argv = [*me, "noop-gateway", "--port", "0", "--bundle", str(bundle_dir)]
    with serving([*argv, "--candidates", str(candidates)], log_dir / "noop_gateway.log") as (
        pid,
        target,
    ):
        out["noop_gateway"] = asyncio.run(
            recommend_closed_loop(target, {"gateway": pid}, traffic, duration_s, warmup_s)
        )
    if embedded is not None:
        from bench.topology import start_embedded

        log("floor: embedded gateway (1 process), one in flight")
        artifacts, version = embedded
        with start_embedded(artifacts, version, log_dir / "embedded", gateways=1) as group:
            out["embedded_closed_loop"] = asyncio.run(
                recommend_closed_loop(group.target, group.pids(), traffic, duration_s, warmup_s)
            )
    return out


# --- the targets ------------------------------------------------------------------------------


def _rank_key(stages: dict) -> str | None:
    keys = [k for k in stages if k.startswith("rank_") and k[5:].isdigit()]
    return keys[0] if keys else None


def _row(check: str, measured: str, reference: str, ratio, target: str, ok) -> dict:
    verdict = "not measured" if ok is None else ("PASS" if ok else "FAIL")
    return {
        "check": check,
        "measured": measured,
        "reference": reference,
        "ratio": ratio,
        "target": target,
        "verdict": verdict,
    }


def targets(r: dict, cores: float, cores_source: str, reference_rank_ms: float | None) -> list:
    """The issue's ratios from a bench result dict; a row whose inputs were not measured in
    this run says so (verdict "not measured")."""
    stages, floors = r.get("stages", {}), r.get("floors", {})
    pipe = stages.get("pipeline_recommend_k20", {})
    echo = floors.get("echo", {})
    emb_cl = floors.get("embedded_closed_loop", {})
    rows = []

    # 1. closed loop, one in flight, embedded p50 <= pipeline p50 + echo p50 + 0.3 ms
    if pipe and echo and emb_cl.get("p50_ms") is not None:
        floor = pipe["p50_ms"] + echo["p50_ms"] + FLOOR_OVERHEAD_MS
        rows.append(
            _row(
                "embedded Recommend p50, closed loop, 1 in flight",
                f"{emb_cl['p50_ms']:.3f} ms",
                f"pipeline {pipe['p50_ms']:.3f} + echo {echo['p50_ms']:.3f} + "
                f"{FLOOR_OVERHEAD_MS} = {floor:.3f} ms",
                round(emb_cl["p50_ms"] / floor, 3),
                "<= 1 (p50 <= floor)",
                emb_cl["p50_ms"] <= floor,
            )
        )
    else:
        missing = [flag for flag, got in (("--stages", pipe), ("--floors", echo),
                                          ("--floor-embedded", emb_cl)) if not got]  # fmt: skip
        rows.append(
            _row("embedded Recommend p50, closed loop, 1 in flight", "–",
                 f"needs {' and '.join(missing)}", None, "<= 1 (p50 <= floor)", None)
        )  # fmt: skip

    # 2. embedded max rate at p99 <= SLO / CPU-bound ceiling
    emb = r.get("systems", {}).get("embedded", {})
    loadgen = emb_cl or floors.get("noop_gateway", {})
    pipe_cpu = pipe.get("cpu_ms_mean")
    echo_cpu = echo.get("server_cpu_ms_per_call")
    gen_cpu = loadgen.get("load_generator_cpu_ms_per_request")
    name = f"embedded max rate (p99 <= {r.get('embedded_slo_p99_ms', 20):g} ms) / CPU ceiling"
    target = ">= 0.6"
    if None not in (pipe_cpu, echo_cpu, gen_cpu) and pipe_cpu + echo_cpu + gen_cpu > 0:
        per_req = pipe_cpu + echo_cpu + gen_cpu
        ceiling = cores * 1000.0 / per_req
        ref = (
            f"{cores:g} cores ({cores_source}) / ({pipe_cpu:.3f} pipeline + {echo_cpu:.3f} echo "
            f"server + {gen_cpu:.3f} load generator ms CPU) = {ceiling:.0f}/s"
        )
        if emb.get("max_rate") is not None:
            ratio = round(emb["max_rate"] / ceiling, 3)
            measured, ok = f"{emb['max_rate']:g}/s", ratio >= 0.6
            if emb.get("first_failing_rate") is None and not ok:
                # every step passed: the rate is a lower bound, not the system's limit
                measured, ok = f"{emb['max_rate']:g}/s (every step passed: raise --max-rate)", None
            rows.append(_row(name, measured, ref, ratio, target, ok))
        else:
            why = "no step met the SLO" if emb else "embedded not in --systems"
            rows.append(_row(name, why, ref, None, target, False if emb else None))
    else:
        rows.append(_row(name, "–", "needs --stages and --floors", None, target, None))

    # 3. split / plumbing max rate, 4. p99 ratio at half split's max rate
    name = f"split / plumbing max rate (p99 <= {r.get('slo_p99_ms', 50):g} ms)"
    if "split_vs_plumbing_max_rate" in r:
        v = r["split_vs_plumbing_max_rate"]
        split, plumb = r["systems"]["split"], r["systems"]["plumbing"]
        measured, ref, ok = (
            f"{split['max_rate']:g}/s",
            f"plumbing {plumb['max_rate']:g}/s",
            v >= 0.7,
        )
        # a rate at the top of the schedule (every step passed) is a lower bound only
        if plumb.get("first_failing_rate") is None:
            ref, ok = f"{ref} (every step passed: raise --max-rate)", None
        if split.get("first_failing_rate") is None and not ok:
            measured, ok = f"{measured} (every step passed: raise --max-rate)", None
        rows.append(_row(name, measured, ref, v, ">= 0.7", ok))
    else:
        rows.append(_row(name, "–", "needs split and plumbing", None, ">= 0.7", None))
    name = "split p99 / plumbing p99 at half split's max rate"
    if "half_rate" in r:
        h = r["half_rate"]
        rows.append(
            _row(
                f"{name} ({h['rate']:g}/s)",
                f"{h['split']['latency_ms']['p99']} ms",
                f"plumbing {h['plumbing']['latency_ms']['p99']} ms",
                h["p99_ratio"],
                "<= 2",
                h["p99_ratio"] <= 2,
            )
        )
    else:
        rows.append(_row(name, "–", "needs split and plumbing", None, "<= 2", None))

    # 5. rank_N in process vs a reference
    key = _rank_key(stages)
    ref_stages = r.get("stages_reference", {})
    ref_ms, ref_what = reference_rank_ms, "--reference-rank-ms"
    if ref_ms is None and key and key in ref_stages:
        ref_ms, ref_what = ref_stages[key]["p50_ms"], "--reference-artifacts"
    name = f"{key or 'rank'} p50 in process / reference"
    if key and ref_ms:
        p50 = stages[key]["p50_ms"]
        ratio = round(p50 / ref_ms, 3)
        rows.append(
            _row(name, f"{p50:.3f} ms", f"{ref_ms:.3f} ms ({ref_what})", ratio, "<= 0.6",
                 ratio <= 0.6)
        )  # fmt: skip
    else:
        why = "needs --reference-rank-ms or --reference-artifacts" if key else "needs --stages"
        rows.append(_row(name, f"{stages[key]['p50_ms']:.3f} ms" if key else "–", why, None,
                         "<= 0.6", None))  # fmt: skip

    # 6. ratings for the k returned only (rater.onnx): rank_N_rate20 vs the same bundle's two
    # graphs merged into the single graph of before (bench.stages), same run
    rated, single = (f"{key}_rate20", f"{key}_single_graph") if key else ("", "")
    name = f"{rated or 'rank_N_rate20'} p50 / {single or 'rank_N_single_graph'} p50"
    if key and rated in stages and single in stages:
        p50, ref = stages[rated]["p50_ms"], stages[single]["p50_ms"]
        ratio = round(p50 / ref, 3)
        rows.append(_row(name, f"{p50:.3f} ms", f"{ref:.3f} ms (same bundle, one graph)", ratio,
                         "<= 0.6", ratio <= 0.6))  # fmt: skip
    else:
        why = (
            "this bundle has no rater.onnx: one graph rates every candidate (a materialized "
            "rating matrix, docs/bundle.md, or no rating model)"
            if key
            else "needs --stages"
        )
        rows.append(_row(name, "–", why, None, "<= 0.6", None))
    return rows


def floors_markdown(r: dict) -> list[str]:
    lines: list[str] = []
    f = r.get("floors")
    if f:
        lines += [
            f"## Floors: one call in flight, closed loop ({f['duration_s']:g} s after "
            f"{f['warmup_s']:g} s warm-up, loopback)",
            "",
            "| what | calls | p50 ms | p99 ms | server CPU ms/call | load generator CPU ms/call |",
            "|---|---|---|---|---|---|",
        ]
        if "echo" in f:
            e = f["echo"]
            lines.append(
                f"| bare grpc.aio echo ({e['payload_bytes']} B) | {e['calls']} | {e['p50_ms']} | "
                f"{e['p99_ms']} | {e['server_cpu_ms_per_call']} | "
                f"{e['client_cpu_ms_per_call']} (echo client) |"
            )
        for key, label in (
            ("noop_gateway", "no-op gateway Recommend (canned stages)"),
            ("embedded_closed_loop", "embedded gateway Recommend (1 process)"),
        ):
            if key in f:
                x = f[key]
                cpu = " + ".join(f"{v}" for v in x["server_cpu_ms_per_request"].values())
                lines.append(
                    f"| {label} | {x['requests']} | {x['p50_ms']} | {x['p99_ms']} | {cpu} | "
                    f"{x['load_generator_cpu_ms_per_request']} |"
                )
        pipe = r.get("stages", {}).get("pipeline_recommend_k20")
        if pipe and "cpu_ms_mean" in pipe:
            lines.append(
                f"| in-process pipeline Recommend k=20 (no gRPC) | {pipe['n']} | "
                f"{pipe['p50_ms']} | {pipe['p99_ms']} | {pipe['cpu_ms_mean']} (this process) | – |"
            )
        lines.append("")
    rows = r.get("targets")
    if rows:
        lines += [
            "## Serving overhead: ratios and targets (this run)",
            "",
            "| check | measured | reference | ratio | target | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for x in rows:
            ratio = "–" if x["ratio"] is None else x["ratio"]
            lines.append(
                f"| {x['check']} | {x['measured']} | {x['reference']} | {ratio} | "
                f"{x['target']} | **{x['verdict']}** |"
            )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__.split("\n")[0])
    p.add_argument("role", choices=("echo", "noop-gateway"))
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bundle", help="noop-gateway: bundle directory (catalog, feature spec)")
    p.add_argument("--candidates", type=int, default=200)
    args = p.parse_args(argv)
    from services.platform.server import run_loop  # the event loop recserve's servers use

    if args.role == "echo":
        run_loop(_serve_echo(args.port))
    else:
        if not args.bundle:
            p.error("noop-gateway needs --bundle")
        run_loop(_serve_noop_gateway(args.port, args.bundle, args.candidates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
