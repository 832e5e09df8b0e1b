"""training.evaluate.session on the tiny bundle: both kinds of trial run through the served
path, and a few events change the next top 10 without retraining."""

from __future__ import annotations

import json

from training.evaluate.session import SessionConfig, main


def test_session_check_runs_both_kinds_of_user(tiny_bundle, tmp_path, capsys):
    config = SessionConfig(users=8, min_items=10, min_history=20, max_share=0.5)
    result = main(tiny_bundle, tmp_path / "session.json", config)
    assert json.loads((tmp_path / "session.json").read_text()) == json.loads(json.dumps(result))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"new_users_moved_up", "known_users_shown", "examples"}

    new, known = result["new_users"], result["known_users"]
    assert new["trials"] > 0 and known["trials"] > 0
    assert 0.0 <= new["moved_up_share"] <= 1.0 and 0.0 <= known["shown_share"] <= 1.0
    for trial in new["per_tag"] + known["per_user"]:
        assert 0 <= trial["before"] <= result["k"] and 0 <= trial["after"] <= result["k"]
    # the events reach the models: some list changed (a tag's count moved) without retraining
    assert any(t["after"] != t["before"] for t in new["per_tag"] + known["per_user"])
    # the MovieLens example is tried as reported when the data has it
    assert [(t["user"], t["tag"]) for t in known["examples"]] == [("196", "Horror")]
