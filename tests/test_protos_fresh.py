"""The committed stubs in recserve/v1/ are exactly what scripts/gen_protos.py generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "recserve" / "v1"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates stubs")
    generated = _load_generator().generate(tmp_path)
    assert generated, "protoc generated nothing"
    fresh = {p.name: p.read_bytes() for p in generated}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(committed), "stub file set differs: run scripts/gen_protos.py"
    stale = [name for name, data in fresh.items() if committed[name] != data]
    assert not stale, f"stale stubs {stale}: run `python scripts/gen_protos.py`"
