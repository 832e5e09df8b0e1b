"""bench.pipeline_ab: whole embedded pipeline CPU per Recommend, bundle against bundle."""

from __future__ import annotations

import re

from bench import pipeline_ab


def test_prints_each_bundles_cpu_and_its_difference_to_the_first(tiny_bundle, capsys) -> None:
    assert (
        pipeline_ab.main([str(tiny_bundle), str(tiny_bundle), "--rounds", "2", "--calls", "5"]) == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if str(tiny_bundle) in line]
    assert len(lines) == 2
    rows = [re.match(r"\s+([\d.]+)\s+\(([+-][\d.]+) vs the first\)", line) for line in lines]
    assert all(rows) and float(rows[0][1]) > 0 and float(rows[0][2]) == 0.0
