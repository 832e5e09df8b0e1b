"""Markdown for the scale parts of a bench run: the bundles compared, the max-rate ratio of the
main bundle to the baseline, and each system's processes (time to SERVING, resident memory)."""

from __future__ import annotations


def scale_markdown(r: dict) -> list[str]:
    lines = []
    bundles = r.get("bundles", {})
    if bundles:
        lines += [
            "## Bundles",
            "",
            "| bundle | items | users | index | nprobe | recall@100 (build) |",
            "|---|---|---|---|---|---|",
        ]
        for name, b in bundles.items():
            index = b.get("index", {})
            lines.append(
                f"| {name}: `{b['path']}` | {b['n_items']:,} | {b['n_users']:,} | "
                f"{b['index_type']} | {index.get('nprobe', '–')} | {index.get('recall', '–')} |"
            )
        lines.append("")
    if "scale_ratio" in r:
        pairs = ", ".join(f"{k} **{v}**" for k, v in r["scale_ratio"].items())
        lines += [f"Max rate, main bundle / baseline bundle (same run): {pairs}.", ""]
    return lines


def processes_markdown(r: dict) -> list[str]:
    rows = [
        (system, name, secs, s["processes"])
        for system, s in r["systems"].items()
        if "processes" in s
        for name, secs in s["processes"]["startup_s"].items()
    ]
    if not rows:
        return []
    lines = [
        "## Processes: start-up (spawn -> SERVING), resident memory, CPU over the step schedule",
        "",
        "| system | process | start-up s | RSS at start MB | RSS after load MB | peak RSS MB "
        "| CPU s over the steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, name, secs, p in rows:
        start = p["memory_at_start"].get(name, {})
        after = p["memory_after_load"].get(name, {})
        cpu = p.get("cpu_s_during_steps", {}).get(name, "–")
        lines.append(
            f"| {system} | {name} | {secs} | {start.get('rss_mb', '–')} | "
            f"{after.get('rss_mb', '–')} | {after.get('peak_rss_mb', '–')} | {cpu} |"
        )
    lines.append("")
    return lines
