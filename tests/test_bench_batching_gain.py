"""bench.batching_gain runs on a bundle and reports what the ranking batches do: one ranker
call per request alone, fewer when requests come together; both parts, both variants."""

from __future__ import annotations

import json

from bench import batching_gain


def test_batching_gain_reports_both_parts(tiny_bundle, capsys):
    batching_gain.main(
        ["--bundle", str(tiny_bundle), "--concurrency", "1,4", "--rounds", "1", "--n", "40"]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    by = {(row["part"], row["concurrency"]): row for row in rows}
    assert set(by) == {(p, c) for p in ("embedded", "ranking service") for c in (1, 4)}
    for part in ("embedded", "ranking service"):
        assert by[part, 1]["ranker_calls_per_request"] == 1.0
        assert by[part, 4]["ranker_calls_per_request"] == 0.25
    assert by["embedded", 1]["tower_calls_per_request"] == 1.0
    assert by["embedded", 4]["tower_calls_per_request"] == 0.25
    for (a, b), part in ((("off", "on"), "embedded"), (("worker", "leader"), "ranking service")):
        for c in (1, 4):
            row = by[part, c]
            assert row[f"{a}_cpu_ms"] > 0 and row[f"{b}_cpu_ms"] > 0
            ratio = row[f"{b}_cpu_ms"] / row[f"{a}_cpu_ms"]
            assert abs(row[f"{b}_over_{a}"] - ratio) < 0.01
