"""The client and the `recserve` CLI against a running gateway (an embedded gateway process
started by the launcher from the tiny bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recserve.cli import build_parser, main
from recserve.client import RecserveClient
from services.contract.bundle import Bundle
from services.contract.vocab import Vocabulary
from services.launcher import Launcher


@pytest.fixture(scope="module")
def gateway(tiny_bundle: Path, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("gateway-logs")
    with Launcher(tiny_bundle.parent, tiny_bundle.name, mode="embedded", log_dir=log_dir) as run:
        yield run.gateway_target


@pytest.fixture(scope="module")
def user(tiny_bundle: Path) -> str:
    return Vocabulary.load(Bundle.load(tiny_bundle).path("user_ids.npy")).ids[0]


def test_client_recommend(gateway, user):
    with RecserveClient(gateway) as client:
        reply = client.recommend(user, k=3)
    assert len(reply.items) == 3


def test_cli_recommend_prints_a_table_of_titles(gateway, user, capsys):
    assert main(["recommend", "--target", gateway, "--user", user, "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "title" in out and "tags" in out and "score" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 4


def test_cli_json_output_parses(gateway, user, capsys):
    assert main(["recommend", "--target", gateway, "--user", user, "-k", "2", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert len(reply["items"]) == 2 and reply["model_version"]


def test_cli_other_commands(gateway, user, capsys):
    main(["recommend", "--target", gateway, "--user", user, "-k", "1", "--json"])
    item = json.loads(capsys.readouterr().out)["items"][0]["item_id"]
    for argv in (
        ["predict", "--user", user, "--items", item],
        ["similar", "--item", item, "-k", "2"],
        ["tags", "--user", user, "-k", "2"],
        ["value", "--users", f"{user},someone-new"],
        ["feedback", "--user", user, "--item", item, "--type", "click"],
    ):
        assert main([*argv, "--target", gateway]) == 0, argv
    assert "accepted 1 event" in capsys.readouterr().out


def test_cli_reports_bad_arguments_with_the_status(gateway, capsys):
    assert main(["recommend", "--target", gateway, "--user", "", "-k", "3"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_cli_says_when_no_gateway_is_running(capsys):
    from services.launcher import free_port

    target = f"127.0.0.1:{free_port()}"
    assert main(["recommend", "--target", target, "--user", "1", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "UNAVAILABLE" in err and target in err and "recserve serve" in err


def test_predict_shows_p_interact_the_score_recommend_orders_by(gateway, user, capsys):
    main(["recommend", "--target", gateway, "--user", user, "-k", "1", "--json"])
    top = json.loads(capsys.readouterr().out)["items"][0]
    assert main(["predict", "--target", gateway, "--user", user, "--items", top["item_id"]]) == 0
    out = capsys.readouterr().out
    assert "P(interact)" in out.splitlines()[0]
    assert f"{top['stage_scores']['interaction']:.3f}" in out.splitlines()[2]


def test_similar_names_the_item_and_has_no_empty_rating_column(gateway, user, capsys):
    main(["recommend", "--target", gateway, "--user", user, "-k", "1", "--json"])
    top = json.loads(capsys.readouterr().out)["items"][0]
    assert main(["similar", "--target", gateway, "--item", top["item_id"], "-k", "3"]) == 0
    header, columns, *_ = capsys.readouterr().out.splitlines()
    assert header == f"Items like {top['item_id']}: {top['title']}"
    assert "rating" not in columns and "score" in columns


def test_a_rating_event_needs_its_rating(gateway, user, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["feedback", "--target", gateway, "--user", user, "--item", "1", "--type", "rating"])
    assert caught.value.code == 2
    assert "--rating is required for rating events" in capsys.readouterr().err


def test_options_go_after_the_subcommand_too(tiny_bundle, capsys):
    assert main(["bundle", "list", "--artifacts", str(tiny_bundle.parent)]) == 0
    assert tiny_bundle.name in capsys.readouterr().out
    assert main(["bundle", "--artifacts", str(tiny_bundle.parent), "list"]) == 0
    assert tiny_bundle.name in capsys.readouterr().out


def test_every_option_explains_itself(capsys):
    import argparse

    def commands(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield name, sub
                    yield from commands(sub)

    for name, parser in commands(build_parser()):
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.option_strings or action.dest)
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    assert "number of items (default: 10)" in capsys.readouterr().out


def test_a_closed_pipe_is_not_a_traceback(tiny_bundle):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "recserve.cli", "bundle", "list", "--artifacts",
            str(tiny_bundle.parent)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader (`| head`) is gone before the first write
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_items_table_shows_prices_only_when_the_answer_has_them():
    from recserve.display import items_table
    from recserve.v1 import gateway_pb2

    plain = gateway_pb2.RecommendedItem(item_id="i1", title="Oat milk", score=0.5)
    priced = gateway_pb2.RecommendedItem(
        item_id="i2", title="Rye bread", score=0.4, price=3.25, currency="EUR"
    )
    assert "price" not in items_table([plain])
    table = items_table([priced, plain])
    assert "price" in table.splitlines()[0] and "3.25 EUR" in table
