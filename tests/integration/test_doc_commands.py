"""Every `recserve ...` and `make ...` command README.md and docs/operations.md show still works:
the ones that can run against the tiny bundle are run (client commands against an embedded
gateway, `make` targets that call it, bundle listing); the rest must be named in SKIPPED with
the reason, so a command added to the docs is either tested here or consciously skipped."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from recserve.cli import main

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/operations.md")
# Commands that start the whole system, train, or run for minutes: covered elsewhere or too slow.
SKIPPED = {
    "make demo": "fresh-machine path: trains (minutes); tests/integration/test_end_to_end.py",
    "make test": "runs this suite", "make install": "creates the venv", "make data": "downloads",
    "make train": "trains (minutes); tests/training/test_pipeline.py",
    "make retrain": "trains", "make eval": "minutes", "make eval-external": "own venv, minutes",
    "make eval-byo": "trains", "make eval-value": "minutes", "make loadtest": "minutes",
    "make bench": "minutes", "make bench-1m": "1M-item bundle", "make bench-gpu": "needs a GPU",
    "make fault": "tests/integration/test_fault_injection.py runs it short",
    "make soak": "10 min; tests/integration/test_soak_short.py",
    "make ab-report": "trains a simulation", "make protos": "tests/test_protos_fresh.py",
    "make fmt": "rewrites files", "make lint": "CI runs it", "make publish": "needs BUNDLE=<dir>",
    "make rollback": "changes LATEST; tests/training/test_bundle.py",
    "make serve": "tests/integration/test_walkthrough.py runs `recserve serve`",
    "make serve-embedded": "the same supervisor in embedded mode",
    "recserve serve": "tests/integration/test_walkthrough.py",
    "recserve demo": "starts five processes; tests/integration/test_end_to_end.py",
    "recserve train": "trains; tests/training/test_train_any_dataset.py",
}  # fmt: skip
# A shop's folder in the docs -> the built-in MovieLens dataset (the same format).
SHOP = "path/to/shop"
COMMAND = re.compile(r"^(?:\.venv/bin/)?(recserve|make)\s")


def documented_commands() -> list[str]:
    """Commands in ```bash blocks and `inline code` of the docs, comments stripped, in order."""
    found: list[str] = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        candidates = [line for block in blocks for line in block.splitlines()]
        candidates += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in candidates:
            command = line.split("  #")[0].split(" # ")[0].strip()
            if COMMAND.match(command):
                found.append(command.removeprefix(".venv/bin/"))
    return list(dict.fromkeys(found))


def _skipped(command: str) -> bool:
    return any(command == s or command.startswith(s + " ") for s in SKIPPED)


@pytest.fixture(scope="module")
def items_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "items.jsonl"
    line = {"item_id": "doc-item", "title": "Kettle", "tags": ["Kitchen"], "description": "x"}
    path.write_text(json.dumps(line) + "\n")
    return path


def _argv(command: str, items_file: Path) -> list[str]:
    argv = shlex.split(command)
    return [str(items_file) if a in ("FILE", "items.jsonl") else a
            for a in argv]  # fmt: skip


@pytest.mark.timeout(120)
def test_every_documented_command_works(
    embedded_gateway, tiny_bundle, items_file, data_dir, capsys
):
    commands = documented_commands()
    assert any(c.startswith("recserve recommend") for c in commands), commands
    ran, outputs = [], {}
    for command in commands:
        if _skipped(command):
            continue
        argv = [str(data_dir / "datasets" / "movielens") if a == SHOP else a
                for a in _argv(command, items_file)]  # fmt: skip
        if argv[0] == "recserve":
            extra = ["--target", embedded_gateway] if argv[1] not in ("bundle", "data") else []
            if argv[1] == "bundle":
                extra = ["--artifacts", str(tiny_bundle.parent)]
            code = main([*argv[1:], *extra])
            outputs[command] = capsys.readouterr()
        else:
            target = argv[1]
            args = [a if not a.startswith("FILE=") else f"FILE={items_file}" for a in argv[2:]]
            env = {**os.environ, "RECSERVE_TARGET": embedded_gateway,
                   "RECSERVE_ARTIFACTS": str(tiny_bundle.parent)}  # fmt: skip
            run = subprocess.run(
                ["make", "-s", "-o", "install", "-o", ".venv/.installed", target, *args,
                 f"ARTIFACTS={tiny_bundle.parent}"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            code = run.returncode
            outputs[command] = run
        assert code == 0, (command, outputs[command])
        ran.append(command)
    assert len(ran) >= 10, ran
    # What the docs promise about the answers, beyond "it ran":
    value = next(out.out for c, out in outputs.items() if c.startswith("recserve value"))
    assert "999999  NEW" in value, value  # unknown users are NEW, not NOT_FOUND
    # The item `make add-items` added brought a tag the bundle never had: it filters at once.
    argv = ["recommend", "--user", "196", "-k", "5", "--include-tags", "Kitchen", "--json"]
    assert main([*argv, "--target", embedded_gateway]) == 0
    assert [i["item_id"] for i in json.loads(capsys.readouterr().out)["items"]] == ["doc-item"]


def test_every_documented_command_is_run_or_consciously_skipped():
    unknown_make = [
        c for c in documented_commands()
        if c.startswith("make ") and not _skipped(c)
        and c.split()[1] not in ("recommend", "add-items", "bundles", "help")
    ]  # fmt: skip
    assert not unknown_make, f"run these in the test above or add them to SKIPPED: {unknown_make}"
