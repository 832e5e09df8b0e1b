"""A short soak (about 45 s) of the split stack, five real processes on loopback: zero errors,
no RSS, fd or thread growth beyond loose bounds. `make soak` runs the long one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.soak import SoakConfig, SoakLimits, markdown, soak


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_short_soak_has_no_errors_and_no_growth(tiny_bundle: Path, tmp_path: Path) -> None:
    cfg = SoakConfig(
        artifacts=str(tiny_bundle.parent),
        version=tiny_bundle.name,
        seconds=40.0,
        rate=25.0,  # far below capacity even on a loaded 2-core box
        warmup_s=8.0,
        sample_every_s=5.0,
        deadline_ms=5000.0,  # generous: the test box is shared; errors, not latency, are judged
        out=str(tmp_path),
        limits=SoakLimits(rss_growth_pct=25.0, rss_growth_mb=50.0, fd_slack=8, thread_slack=4),
    )
    report = soak(cfg, log=lambda line: None)

    assert report["passed"], report["failures"]
    assert report["errors"] == 0 and report["requests"] >= 0.8 * 40 * 25
    assert set(report["services"]) == {"feature", "retrieval", "ranking", "uservalue", "gateway"}
    assert len(report["samples"]) >= 1 + 40 // 5  # start, periodic, end
    for figures in report["services"].values():
        assert figures["rss_mb_start"] > 10  # real processes were measured
    written = json.loads((tmp_path / "soak.json").read_text())
    assert written["passed"] and written["requests"] == report["requests"]
    text = (tmp_path / "soak.md").read_text()
    assert text == markdown(written) and "| gateway |" in text and "PASS" in text
