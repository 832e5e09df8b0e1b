"""bench.ranker_shapes exports every RankerConfig variant and times it against the default."""

from __future__ import annotations

import json

from bench import ranker_shapes


def test_every_variant_is_exported_and_timed(data_dir, capsys):
    ranker_shapes.main(
        ["--data-dir", str(data_dir), "--calls", "5", "--rounds", "1", "--warmup", "2"]
    )
    result = json.loads(capsys.readouterr().out)
    names = set(ranker_shapes.variants())
    assert names <= set(result)
    assert result["mlp_128_64"]["over_reference_p50"] == 1.0
    for name in names:
        assert result[name]["p50_ms"] > 0
