"""training.evaluate.encoders variants: an encoder plus TrainConfig overrides."""

from __future__ import annotations

import pytest

from training.evaluate.encoders import parse_variant


def test_variants_parse_to_an_encoder_and_typed_overrides():
    assert parse_variant("mean") == ("mean", {})
    assert parse_variant("transformer+user_dropout=0.5+user_seq_len=20") == (
        "transformer",
        {"user_dropout": 0.5, "user_seq_len": 20},
    )
    assert parse_variant("mean+user_encoder=auto") == ("mean", {"user_encoder": "auto"})
    assert parse_variant("mean+ranker_hidden_dims=64x32") == (
        "mean",
        {"ranker_hidden_dims": (64, 32)},
    )


@pytest.mark.parametrize("bad", ["mean+user_dropout", "mean+=1", "mean+user_dropout="])
def test_a_malformed_variant_is_refused(bad):
    with pytest.raises(ValueError, match="ENCODER"):
        parse_variant(bad)
