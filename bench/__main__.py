"""python -m bench: the plumbing limit, recserve split and embedded, stage floors, ratios.

Every system is driven by the same harness (loadtest) in the same run, one after another, on
this machine: the step schedule finds each one's highest rate with p99 <= the SLO; ratios are
taken against the plumbing stand-in measured minutes earlier. The floors (bench.floors: a bare
gRPC echo, the real gateway over canned stages, one embedded gateway, each one call in flight)
and the in-process stage costs (bench.stages) give the issue's targets, checked in the same run
("Serving overhead: ratios and targets"). Writes bench.json + bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.cpu_share import cpu_seconds
from bench.floors import floors_markdown, measure_floors, targets
from bench.report import processes_markdown, scale_markdown
from bench.topology import start_embedded, start_plumbing, start_split
from loadtest.runner import LoadSpec, TrafficConfig, run
from loadtest.steps import find_max_rate, geometric_rates
from services.contract.bundle import Bundle, resolve_bundle_dir


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _steps(name: str, target: str, args, traffic: TrafficConfig, slo: float) -> dict:
    spec = LoadSpec(
        target=target,
        schedule="poisson",
        duration_s=args.duration,
        warmup_s=args.warmup,
        processes=args.load_processes,
        default_deadline_ms=1000.0,
        seed=1,
    )
    rates = geometric_rates(args.start, args.factor, args.max_rate)
    _log(f"{name}: step schedule {rates[0]:g}..{rates[-1]:g}/s, p99 SLO {slo:g} ms")
    out = find_max_rate(
        spec,
        traffic,
        rates,
        slo,
        refine=args.refine,
        on_step=lambda s: _log(
            f"  {name} {s['rate']:g}/s: p99 "
            f"{s['latency_ms'].get('p99', 0):.1f} ms "
            f"-> {s['verdict']}"
        ),
    )
    out.pop("_recorders")
    return out


def _at_rate(target: str, rate: float, args, traffic: TrafficConfig) -> dict:
    """One open-loop run at `rate` for --half-rate-duration seconds (a p99 needs thousands of
    requests: a step's few seconds at half rate leave it to a dozen)."""
    spec = LoadSpec(
        target=target,
        schedule="poisson",
        rate=rate,
        duration_s=args.half_rate_duration,
        warmup_s=args.warmup,
        processes=args.load_processes,
        seed=2,
    )
    s = run(spec, traffic).summary()
    s.pop("timeline")
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--version", default="latest")
    p.add_argument("--out", default="bench-results")
    p.add_argument(
        "--systems",
        default="plumbing,split,embedded",
        help="comma list of plumbing, split, embedded",
    )
    p.add_argument("--slo-p99-ms", type=float, default=50.0, help="split/plumbing SLO")
    p.add_argument("--embedded-slo-p99-ms", type=float, default=20.0)
    p.add_argument("--gateways", type=int, default=2, help="embedded gateway processes")
    p.add_argument("--mix", default="recommend=1", help="request mix (default: Recommend only)")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument(
        "--half-rate-duration",
        type=float,
        default=20.0,
        help="seconds of the split vs plumbing run at half split's max rate (its p99)",
    )
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--start", type=float, default=100.0)
    p.add_argument("--factor", type=float, default=1.4)
    p.add_argument("--max-rate", type=float, default=4000.0)
    p.add_argument(
        "--refine",
        type=int,
        default=3,
        help="bisections between the last passing and the first failing step: each halves the "
        "max rate's uncertainty (factor 1.4, 3: the max rate is within 5%% of the true one)",
    )
    p.add_argument("--load-processes", type=int, default=1)
    p.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--stage-calls", type=int, default=2000, help="timed calls per stage")
    p.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bare gRPC echo, no-op gateway and 1 embedded gateway, one call in flight",
    )
    p.add_argument("--floor-duration", type=float, default=10.0, help="s per floor")
    p.add_argument("--floor-warmup", type=float, default=2.0)
    p.add_argument("--echo-payload-bytes", type=int, default=64)
    p.add_argument(
        "--floor-embedded",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the real embedded gateway (1 process) closed loop, one in flight",
    )
    p.add_argument(
        "--cores",
        type=float,
        default=None,
        help="cores of the CPU-bound ceiling (default: os.cpu_count())",
    )
    p.add_argument(
        "--reference-rank-ms",
        type=float,
        default=None,
        help="reference rank_200 p50 (ms) for the ranking target",
    )
    p.add_argument(
        "--reference-artifacts",
        default="",
        help="a reference bundle (its LATEST): its in-process stage costs, rank_200 compared",
    )
    p.add_argument(
        "--retrieval-items",
        type=int,
        default=1_000_000,
        help="synthetic catalog size for the index comparison (0 = skip)",
    )
    p.add_argument("--hnsw", action="store_true", help="also build HNSW32 (slow at 1M items)")
    p.add_argument(
        "--baseline-artifacts",
        default="",
        help="a second bundle (its LATEST) run right after each system, same settings: "
        "its rows are '<system>@baseline' and scale_ratio = max rate / baseline's",
    )
    args = p.parse_args(argv)
    if args.floor_duration <= 0 or args.floor_warmup < 0 or args.stage_calls < 1:
        p.error("--floor-duration and --stage-calls must be positive, --floor-warmup >= 0")
    if args.cores is not None and args.cores <= 0:
        p.error("--cores must be positive")
    cores, cores_source = (
        (args.cores, "--cores") if args.cores else (float(os.cpu_count() or 1), "os.cpu_count()")
    )
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle_dir = resolve_bundle_dir(Path(args.artifacts), args.version)
    traffic = TrafficConfig(bundle_dir=str(bundle_dir), mix=args.mix, unknown_users=0.05, k=20)
    systems = args.systems.split(",")
    runs = [(name, name, Path(args.artifacts), args.version, traffic) for name in systems]
    if args.baseline_artifacts:
        base_dir = resolve_bundle_dir(Path(args.baseline_artifacts))
        base_traffic = TrafficConfig(
            bundle_dir=str(base_dir), mix=args.mix, unknown_users=0.05, k=20
        )
        base = Path(args.baseline_artifacts), base_dir.name, base_traffic
        runs = [
            run_
            for name in systems
            for run_ in ((name, name, *runs[0][2:4], traffic), (f"{name}@baseline", name, *base))
        ]
    result: dict = {
        "command": command,
        "bundle": str(bundle_dir),
        "started": time.ctime(),
        "slo_p99_ms": args.slo_p99_ms,
        "embedded_slo_p99_ms": args.embedded_slo_p99_ms,
        "mix": args.mix,
        "candidates": 200,
        "k": 20,
        "bundles": {"main": bundle_info(bundle_dir)},
        "systems": {},
    }
    if args.baseline_artifacts:
        result["bundles"]["baseline"] = bundle_info(base_dir)

    def save() -> None:
        (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "bench.md").write_text(markdown(result))

    if args.stages:
        from bench.stages import stage_costs

        _log("in-process stage costs")
        result["stages"] = stage_costs(Bundle.load(bundle_dir), n=args.stage_calls)
        if args.baseline_artifacts:
            _log("in-process stage costs, baseline bundle")
            result["stages_baseline"] = stage_costs(Bundle.load(base_dir), n=args.stage_calls)
        if args.reference_artifacts:
            _log("in-process stage costs, reference bundle")
            ref_dir = resolve_bundle_dir(Path(args.reference_artifacts))
            result["stages_reference"] = stage_costs(Bundle.load(ref_dir), n=args.stage_calls)
            result["bundles"]["reference"] = bundle_info(ref_dir)
        save()
    if args.floors:
        result["floors"] = measure_floors(
            bundle_dir,
            traffic,
            out / "logs" / "floors",
            duration_s=args.floor_duration,
            warmup_s=args.floor_warmup,
            candidates=result["candidates"],
            payload_bytes=args.echo_payload_bytes,
            embedded=(Path(args.artifacts), args.version) if args.floor_embedded else None,
            log=_log,
        )
        save()
    if args.retrieval_items:
        from bench.retrieval import compare_indexes

        _log(f"index comparison on {args.retrieval_items} synthetic items")
        result["retrieval_index"] = compare_indexes(n=args.retrieval_items, with_hnsw=args.hnsw)
        save()

    def starter(system: str, key: str, artifacts: Path, version: str):
        logs = out / "logs" / key
        if system == "plumbing":
            return start_plumbing(resolve_bundle_dir(artifacts, version), logs)
        if system == "split":
            return start_split(artifacts, version, logs)
        return start_embedded(artifacts, version, logs, gateways=args.gateways)

    starters = {name: lambda name=name: starter(name, name, Path(args.artifacts), args.version)
                for name in systems}  # fmt: skip
    for key, system, artifacts, version, run_traffic in runs:
        slo = args.embedded_slo_p99_ms if system == "embedded" else args.slo_p99_ms
        with starter(system, key, artifacts, version) as group:
            _log(f"{key}: started in {group.startup_s} s")
            processes = {"startup_s": group.startup_s, "memory_at_start": group.memory_mb()}
            pids = group.pids()
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            result["systems"][key] = _steps(key, group.target, args, run_traffic, slo)
            result["systems"][key]["processes"] = {
                **processes,
                "memory_after_load": group.memory_mb(),
                # CPU seconds of each process over the whole step schedule: how the load spread
                # (two embedded gateways should each take about half)
                "cpu_s_during_steps": {
                    name: round(cpu_seconds(pid) - cpu_before[name], 2)
                    for name, pid in pids.items()
                },
            }
        save()
    ratios = {
        name: round(result["systems"][name]["max_rate"] / base["max_rate"], 3)
        for name in systems
        if (base := result["systems"].get(f"{name}@baseline")) and base["max_rate"]
    }
    if ratios:
        result["scale_ratio"] = ratios
    plumb, split = result["systems"].get("plumbing"), result["systems"].get("split")
    if plumb and split and plumb["max_rate"] and split["max_rate"]:
        half = round(split["max_rate"] / 2, 1)
        _log(f"half-rate comparison at {half:g}/s")
        halves = {}
        for name in ("plumbing", "split"):
            with starters[name]() as group:
                halves[name] = _at_rate(group.target, half, args, traffic)
        result["half_rate"] = {
            "rate": half,
            **halves,
            "p99_ratio": round(
                halves["split"]["latency_ms"]["p99"] / halves["plumbing"]["latency_ms"]["p99"], 2
            ),
        }
        result["split_vs_plumbing_max_rate"] = round(split["max_rate"] / plumb["max_rate"], 3)
    result["cores"] = {"n": cores, "source": cores_source}
    result["targets"] = targets(result, cores, cores_source, args.reference_rank_ms)
    for row in result["targets"]:
        ratio = "–" if row["ratio"] is None else row["ratio"]
        _log(f"target {row['check']}: {ratio} ({row['target']}) {row['verdict']}")
    save()
    _drop_state(out / "logs")
    print(markdown(result))
    return 0


def _drop_state(logs: Path) -> None:
    """The services' feedback logs and the snapshots they write at exit, under each system's
    log folder: never read after the run, and about a gigabyte per embedded gateway on the 1M
    bundle. The process logs stay."""
    for state in sorted(logs.rglob("state"), reverse=True):
        if state.is_dir():
            shutil.rmtree(state, ignore_errors=True)


def bundle_info(bundle_dir: Path) -> dict:
    """Catalog size and index of a bundle, from its manifest (no file is read or checked)."""
    bundle = Bundle.manifest_of(bundle_dir)
    n_items = len(np.load(bundle_dir / "item_ids.npy", allow_pickle=False, mmap_mode="r"))
    n_users = len(np.load(bundle_dir / "user_ids.npy", allow_pickle=False, mmap_mode="r"))
    return {
        "path": str(bundle_dir),
        "n_items": n_items,
        "n_users": n_users,
        "index_type": bundle.manifest.get("index_type"),
        "index": bundle.manifest.get("index", {}),
    }


def markdown(r: dict) -> str:
    lines = [
        "# recserve benchmark",
        "",
        f"Command: `{r['command']}`  ",
        f"Bundle: `{r['bundle']}`, "
        f"{r['candidates']} candidates, k = {r['k']}, mix `{r['mix']}`, started {r['started']}.",
        "",
    ]
    if r["systems"]:
        lines += [
            "## Highest rate meeting the p99 SLO (open loop, Poisson arrivals)",
            "",
            "| system | SLO p99 | max rate (req/s) | p50 / p99 at that rate (ms) |",
            "|---|---|---|---|",
        ]
        for name, s in r["systems"].items():
            best = next((x for x in s["steps"] if x["rate"] == s["max_rate"]), None)
            lat = best["latency_ms"] if best else {}
            lines.append(
                f"| {name} | {s['slo_p99_ms']:g} ms | {s['max_rate']} | "
                f"{lat.get('p50', '–')} / {lat.get('p99', '–')} |"
            )
        lines.append("")
    lines += floors_markdown(r)
    lines += scale_markdown(r) + processes_markdown(r)
    if "split_vs_plumbing_max_rate" in r:
        h = r["half_rate"]
        lines += [
            f"Split / plumbing max rate: **{r['split_vs_plumbing_max_rate']}** (target >= 0.7).",
            f"At half split's max rate ({h['rate']:g}/s): p99 split "
            f"{h['split']['latency_ms']['p99']} ms vs plumbing "
            f"{h['plumbing']['latency_ms']['p99']} ms, ratio **{h['p99_ratio']}** "
            "(target <= 2).",
            "",
        ]
    if "stages" in r:
        base = r.get("stages_baseline", {})
        lines += [
            "## In-process stage costs (one call at a time)",
            "",
            "| stage | p50 ms | p99 ms | mean ms | CPU ms/call | baseline bundle p50 / p99 ms "
            "| reference bundle p50 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        ref = r.get("stages_reference", {})
        for name, s in r["stages"].items():
            b = base.get(name, {})
            lines.append(
                f"| {name} | {s['p50_ms']} | {s['p99_ms']} | {s['mean_ms']} | "
                f"{s.get('cpu_ms_mean', '–')} | "
                f"{b.get('p50_ms', '–')} / {b.get('p99_ms', '–')} | "
                f"{ref.get(name, {}).get('p50_ms', '–')} |"
            )
        lines.append("")
    if "retrieval_index" in r:
        ri = r["retrieval_index"]
        lines += [
            f"## FAISS index choice: {ri['n_items']:,} clustered synthetic items, "
            f"D = {ri['dim']}, recall@{ri['k']} vs exact, single query, 1 thread",
            "",
            "| index | recall | build s | memory MB | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for row in ri["rows"]:
            lines.append(
                f"| {row['index']} | {row['recall_at_k']} | {row['build_s']} | "
                f"{row['memory_mb']} | {row['p50_ms']} | {row['p99_ms']} |"
            )
        lines.append("")
    for name, s in r["systems"].items():
        lines += [
            f"### steps: {name}",
            "",
            "| rate | answered/s | p50 | p99 | max | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for x in s["steps"]:
            lat = x["latency_ms"]
            lines.append(
                f"| {x['rate']:g} | {x['achieved_rps']} | {lat.get('p50')} | "
                f"{lat.get('p99')} | {lat.get('max')} | {x['verdict']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
