"""bench.ort_warmth times the bundle's user tower and ranker hot, after a gRPC round trip and
after an idle gap, on the same sessions and inputs."""

from __future__ import annotations

import json

import pytest

from bench import ort_warmth


def test_each_setting_times_both_models_against_hot(tiny_bundle, capsys):
    small = ["--rounds", "1", "--calls", "5", "--warmup", "2", "--users", "3"]
    ort_warmth.main([str(tiny_bundle), *small, "--candidates", "20", "--gap-ms", "0.1"])
    result = json.loads(capsys.readouterr().out)
    for setting in ort_warmth.SETTINGS:
        for model in ("user_tower", "ranker"):
            row = result[setting][model]
            assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
    assert result["hot"]["ranker"]["over_hot_p50"] == 1.0
    assert result["setup"]["calls"] == 5


@pytest.mark.parametrize("argv", [["--calls", "0"], ["--rounds", "-1"]])
def test_bad_counts_and_a_missing_bundle_are_usage_errors(tiny_bundle, tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as bad_count:
        ort_warmth.main([str(tiny_bundle), *argv])
    with pytest.raises(SystemExit) as no_bundle:
        ort_warmth.main([str(tmp_path)])
    assert bad_count.value.code == no_bundle.value.code == 2
    err = capsys.readouterr().err
    assert "must be at least 1" in err and "is not a bundle directory" in err
