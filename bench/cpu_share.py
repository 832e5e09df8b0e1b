"""CPU seconds per request of each process, at a fixed open-loop rate: where a request's cost
goes (Python gRPC hops vs model work), for the plumbing stand-in, recserve split or embedded.

    python -m bench.cpu_share --system split --rate 100
    python -m bench.cpu_share --system plumbing,split --rate 250 --by-library

Starts the system on loopback (bench.topology), drives Recommend at --rate with the load
harness for --seconds, and reads each process's user + system CPU time from /proc over a
window after a warm-up. Linux only. The ms/request it prints are averages over the window;
on a shared machine they include cache and scheduling effects of the other work.

`--by-library` also samples every process of the system (not the load generator) with Linux
`perf record` (cpu-clock, no call graphs) over the same window, and splits each one's CPU per
request by the shared library the samples fell in, grouped (`LIBRARY_GROUPS`): the Python
interpreter (every line of Python, recserve's and grpc.aio's), numpy, ONNX Runtime, FAISS,
gRPC core (cygrpc), protobuf, the event loop, the C runtime (malloc, memcpy), the kernel
(syscalls, loopback TCP). With two systems (`--system plumbing,split`) it prints both side by
side and their difference: what recserve adds to the plumbing, library by library. Needs
`perf` and permission to sample the processes (root, or kernel.perf_event_paranoid <= 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from services.contract.bundle import resolve_bundle_dir
from services.contract.errors import BundleError

SYSTEMS = ("plumbing", "split", "embedded")

# (group, pattern on the shared object's file name), first match wins; anything else: "other".
LIBRARY_GROUPS: tuple[tuple[str, str], ...] = (
    ("Python interpreter", r"^libpython|^python3"),
    ("numpy", r"^_multiarray_umath|^_umath_linalg|^lib(scipy_)?openblas|^_pocketfft|^_generator"),
    ("ONNX Runtime", r"onnxruntime"),
    ("FAISS", r"faiss|^libgomp"),
    ("gRPC core (cygrpc)", r"^cygrpc"),
    ("protobuf (upb)", r"^_message\."),
    ("event loop (uvloop, asyncio)", r"^loop\.cpython|^_asyncio"),
    ("C runtime (libc, malloc, memcpy)", r"^libc\.|^ld-linux|^libstdc\+\+|^libm\.|^\[vdso\]"),
    ("kernel (syscalls, loopback TCP)", r"^\[kernel"),
)
OTHER = "other"
GROUP_NAMES = (*(name for name, _ in LIBRARY_GROUPS), OTHER)


class PerfError(RuntimeError):
    """`perf record` could not sample the processes (no permission, no such event, ...)."""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def library_group(dso: str) -> str:
    """A shared object's name as perf prints it (a path or a name) -> its LIBRARY_GROUPS name."""
    name = dso.rsplit("/", 1)[-1]
    for group, pattern in LIBRARY_GROUPS:
        if re.search(pattern, name):
            return group
    return OTHER


_SCRIPT_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+[0-9a-f]+\s+\((.*)\)\s*$")


def parse_perf_script(text: str) -> dict[int, dict[str, int]]:
    """`perf script -F pid,period,ip,dso` -> {process id: {shared object: summed period}}
    (cpu-clock periods are nanoseconds; every thread of a process counts for it)."""
    out: dict[int, dict[str, int]] = {}
    for line in text.splitlines():
        match = _SCRIPT_ROW.match(line)
        if match is None:
            continue
        pid, period, dso = int(match[1]), int(match[2]), match[3]
        by_dso = out.setdefault(pid, {})
        by_dso[dso] = by_dso.get(dso, 0) + period
    return out


def ms_by_library(
    periods: Mapping[int, Mapping[str, int]], pids: Mapping[str, int], requests: int
) -> dict[str, dict[str, float]]:
    """{process name: {group: ms CPU per request}} over `requests` requests; every group is
    present (0 where no sample fell), in GROUP_NAMES order."""
    out: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        groups = dict.fromkeys(GROUP_NAMES, 0.0)
        for dso, period in periods.get(pid, {}).items():
            groups[library_group(dso)] += period / 1e6 / max(requests, 1)
        out[name] = {g: round(ms, 4) for g, ms in groups.items()}
    return out


def total_by_library(by_process: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {g: round(sum(groups[g] for groups in by_process.values()), 4) for g in GROUP_NAMES}


def _perf_record(pids: Mapping[str, int], seconds: float, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", str(path),
         "-p", ",".join(str(p) for p in pids.values()), "--", "sleep", f"{seconds:g}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _perf_periods(path: Path) -> dict[int, dict[str, int]]:
    script = subprocess.run(
        ["perf", "script", "-i", str(path), "-F", "pid,period,ip,dso"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return parse_perf_script(script.stdout)


def measure(
    system: str,
    artifacts: Path,
    rate: float,
    seconds: float,
    out: Path,
    *,
    version: str = "latest",
    by_library: bool = False,
) -> dict:
    from bench.topology import start_embedded, start_plumbing, start_split

    bundle = resolve_bundle_dir(artifacts, version)
    logs = out / "logs" / system
    if system == "plumbing":
        group = start_plumbing(bundle, logs)
    elif system == "split":
        group = start_split(artifacts, version, logs)
    else:
        group = start_embedded(artifacts, version, logs, gateways=1)
    warmup = 3.0
    perf_data = out / f"perf-{system}.data"
    with group:
        load = subprocess.Popen(
            [sys.executable, "-m", "loadtest", "run", "--target", group.target,
             "--bundle", str(bundle), "--mode", "open", "--rate", str(rate),
             "--mix", "recommend=1", "--duration", str(seconds + 4), "--warmup", str(warmup),
             "--no-plots", "--quiet", "--out", str(out / f"load-{system}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(warmup + 2)
            served = group.pids()
            pids = {**served, "load generator": load.pid}
            perf = _perf_record(served, seconds, perf_data) if by_library else None
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            time.sleep(seconds)
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            if perf is not None:
                _, err = perf.communicate(timeout=seconds + 60)
                if perf.returncode != 0:
                    raise PerfError(f"perf record failed: {err.strip()[-500:]}")
        finally:
            load.wait(seconds + 120)
    requests = seconds * rate
    per_request = {n: (after[n] - before[n]) / requests * 1000 for n in pids}
    result = {
        "system": system,
        "rate": rate,
        "window_s": seconds,
        "ms_per_request": {n: round(v, 3) for n, v in per_request.items()},
        "total_ms_per_request": round(sum(per_request.values()), 3),
    }
    if by_library:
        libraries = ms_by_library(_perf_periods(perf_data), served, round(requests))
        result["ms_per_request_by_library"] = libraries
        result["total_by_library"] = total_by_library(libraries)
    return result


def library_table(columns: Mapping[str, Mapping[str, float]], *, difference: bool = False) -> str:
    """Markdown: one row per library group (ms CPU per request), one column per entry of
    `columns` (a process, or a system's processes summed), a last row with the column sums;
    `difference` (two columns): a third column, the second minus the first."""
    names = list(columns)
    header = ["library", *names]
    if difference:
        header.append(f"{names[1]} - {names[0]}")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in (*GROUP_NAMES, None):
        if group is None:
            values = [sum(column.values()) for column in columns.values()]
        else:
            values = [column[group] for column in columns.values()]
        cells = [f"{v:.3f} ms" for v in values]
        if difference:
            cells.append(f"{values[1] - values[0]:+.3f} ms")
        if group is None:
            rows.append("| **all** | " + " | ".join(f"**{c}**" for c in cells) + " |")
        else:
            rows.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m bench.cpu_share", description=doc)
    p.add_argument("--system", default="split", help="comma list of " + ", ".join(SYSTEMS))
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--version", default="latest", help="bundle version under --artifacts")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=15.0, help="measured window")
    p.add_argument("--by-library", action="store_true", help="also split CPU by library (perf)")
    p.add_argument("--out", default="bench-results-cpu")
    args = p.parse_args(argv)
    systems = [s.strip() for s in args.system.split(",") if s.strip()]
    if not systems or any(s not in SYSTEMS for s in systems):
        p.error(f"--system: a comma list of {', '.join(SYSTEMS)}")
    if args.rate <= 0 or args.seconds <= 0:
        p.error("--rate and --seconds must be positive")
    if args.by_library and shutil.which("perf") is None:
        p.error("--by-library needs Linux perf on PATH (linux-perf / linux-tools)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for system in systems:
        try:
            result = measure(
                system, Path(args.artifacts), args.rate, args.seconds, out,
                version=args.version, by_library=args.by_library,
            )  # fmt: skip
        except (BundleError, PerfError) as exc:
            print(f"python -m bench.cpu_share: {exc}", file=sys.stderr)
            return 1
        results.append(result)
        (out / f"cpu-{system}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"## {system}: CPU per request at {args.rate:g} Recommend/s")
        for name, ms in result["ms_per_request"].items():
            print(f"{name:16s} {ms:7.3f} ms CPU per request")
        print(f"{'total':16s} {result['total_ms_per_request']:7.3f} ms CPU per request")
    if args.by_library:
        tables = [
            f"### {r['system']}: CPU per request by library and process\n\n"
            + library_table({**r["ms_per_request_by_library"], "all": r["total_by_library"]})
            for r in results
        ]
        if len(results) > 1:
            totals = {r["system"]: r["total_by_library"] for r in results}
            tables.append(
                "### CPU per request by library, every process of each system\n\n"
                + library_table(totals, difference=len(results) == 2)
            )
        text = "\n\n".join(tables)
        (out / "cpu-by-library.md").write_text(text + "\n")
        print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
