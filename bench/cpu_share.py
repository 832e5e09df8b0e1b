"""CPU seconds per request of each process, at a fixed open-loop rate: where a request's cost
goes (Python gRPC hops vs model work), for the plumbing stand-in, recserve split or embedded.

    python -m bench.cpu_share --system split --rate 100
    python -m bench.cpu_share --system plumbing --rate 100

Starts the system on loopback (bench.topology), drives Recommend at --rate with the load
harness for --seconds, and reads each process's user + system CPU time from /proc over a
window after a warm-up. Linux only. The ms/request it prints are averages over the window;
on a shared machine they include cache and scheduling effects of the other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from services.contract.bundle import resolve_bundle_dir

SYSTEMS = ("plumbing", "split", "embedded")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(system: str, artifacts: Path, rate: float, seconds: float, out: Path) -> dict:
    from bench.topology import start_embedded, start_plumbing, start_split

    bundle = resolve_bundle_dir(artifacts, "latest")
    logs = out / "logs" / system
    if system == "plumbing":
        group = start_plumbing(bundle, logs)
    elif system == "split":
        group = start_split(artifacts, "latest", logs)
    else:
        group = start_embedded(artifacts, "latest", logs, gateways=1)
    warmup = 3.0
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
            pids = group.pids()
            pids["load generator"] = load.pid
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            time.sleep(seconds)
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        finally:
            load.wait(seconds + 120)
    per_request = {n: (after[n] - before[n]) / (seconds * rate) * 1000 for n in pids}
    return {
        "system": system,
        "rate": rate,
        "window_s": seconds,
        "ms_per_request": {n: round(v, 3) for n, v in per_request.items()},
        "total_ms_per_request": round(sum(per_request.values()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m bench.cpu_share", description=doc)
    p.add_argument("--system", choices=SYSTEMS, default="split")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=15.0, help="measured window")
    p.add_argument("--out", default="bench-results-cpu")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        p.error("--rate and --seconds must be positive")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(args.system, Path(args.artifacts), args.rate, args.seconds, out)
    (out / f"cpu-{args.system}.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, ms in result["ms_per_request"].items():
        print(f"{name:16s} {ms:7.3f} ms CPU per request")
    print(f"{'total':16s} {result['total_ms_per_request']:7.3f} ms CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
