"""The client and the `recserve` CLI against a running gateway (an embedded gateway process
started by the launcher from the tiny bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recserve.cli import main
from recserve.client import RecserveClient
from services.common.bundle import Bundle
from services.common.vocab import Vocabulary
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
    assert "UNAVAILABLE" in capsys.readouterr().err
