"""bench.batching_gain runs on a bundle and reports what embedded batching does: one ranker
call per request alone, fewer when requests come together."""

from __future__ import annotations

import json

from bench import batching_gain


def test_batching_gain_reports_both_variants(tiny_bundle, capsys):
    batching_gain.main(
        ["--bundle", str(tiny_bundle), "--concurrency", "1,4", "--rounds", "1", "--n", "40"]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    by = {row["concurrency"]: row for row in rows}
    assert set(by) == {1, 4}
    assert by[1]["ranker_calls_per_request"] == 1.0
    assert by[4]["ranker_calls_per_request"] == 0.25
    for row in rows:
        assert row["off_cpu_ms"] > 0 and row["on_cpu_ms"] > 0
        assert abs(row["on_over_off"] - row["on_cpu_ms"] / row["off_cpu_ms"]) < 0.01
