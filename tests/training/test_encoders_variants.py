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


def test_the_ablation_section_labels_variants_and_leads_over_the_best_peer(tmp_path):
    import json

    from training.evaluate.report_peers import encoder_label, encoders_section

    assert encoder_label("transformer+user_seq_time=1+user_seq_kinds=1") == (
        "transformer + time gaps + event kinds"
    )
    assert encoder_label("transformer+user_seq_time=0+user_dropout=0.5") == (
        "transformer + user_dropout=0.5"
    )
    encoders = tmp_path / "encoders_x.json"
    encoders.write_text(
        json.dumps(
            {
                "command": "cmd",
                "systems": {
                    "transformer+user_seq_kinds=1": {
                        "retrieval": {"recall@20": 0.2, "ndcg@10": 0.1},
                        "two_stage": {"recall@20": 0.33, "ndcg@10": 0.22},
                    }
                },
            }
        )
    )
    peers = tmp_path / "external.json"
    peers.write_text(
        json.dumps(
            [
                {
                    "library": "recbole",
                    "model": "SASRec",
                    "metrics": {"recall_at_20": 0.30, "ndcg_at_10": 0.15},
                }
            ]
        )
    )
    systems = {"ease": {"recall@20": 0.25, "ndcg@10": 0.20}, "two_stage": {"recall@20": 0.9}}
    lines = encoders_section(encoders, peers, systems)
    row = next(line for line in lines if line.startswith("| transformer + event kinds"))
    # best peer: SASRec on recall (0.30), EASE on ndcg (0.20); ours is never its own peer
    assert row.endswith("| +10.0% | +10.0% |")
    assert "recall@20 recbole SASRec 0.3000" in "\n".join(lines)
    assert encoders_section(tmp_path / "missing.json", peers, systems) == []
