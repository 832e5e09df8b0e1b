"""bench.event_loop_ab: one embedded gateway per event loop, closed loop, on loopback."""

from __future__ import annotations

import pytest

from bench import event_loop_ab


def test_event_loop_ab_measures_both_loops(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("uvloop")
    event_loop_ab.main(
        [
            "--artifacts", str(tiny_bundle.parent), "--version", tiny_bundle.name,
            "--concurrency", "2", "--rounds", "1", "--duration", "1", "--warmup", "0.3",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    for loop in event_loop_ab.LOOPS:
        line = next(x for x in out.splitlines() if x.startswith(f"median, concurrency 2, {loop}"))
        assert "req/s" in line and "gateway CPU" in line
    started = {p.name for p in tmp_path.iterdir()}
    assert started == set(event_loop_ab.LOOPS)
    logs = "".join(p.read_text() for p in tmp_path.rglob("*.log"))
    assert "event loop: uvloop" in logs and "event loop: asyncio" in logs


def test_grpc_io_ab_starts_a_gateway_on_each_stack(tiny_bundle, tmp_path, capsys):
    event_loop_ab.main(
        [
            "--artifacts", str(tiny_bundle.parent), "--version", tiny_bundle.name,
            "--compare", "grpc-io", "--concurrency", "1", "--rounds", "1", "--duration", "1",
            "--warmup", "0.3", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    for variant in ("event_engine", "posix"):
        head = f"median, concurrency 1, {variant}:"
        line = next(x for x in out.splitlines() if x.startswith(head))
        assert "req/s" in line and "gateway CPU" in line
        logs = "".join(p.read_text() for p in (tmp_path / variant).rglob("*.log"))
        assert f"grpc io: {variant}" in logs
