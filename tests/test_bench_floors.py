"""bench.floors in a very short mode: the bare echo server and the no-op gateway (the real
servicer and server over bench.canned_stages) on 127.0.0.1, port 0, a second of calls each; and
the table of the issue's targets built from a result."""

from __future__ import annotations

import asyncio
import sys

import grpc
import pytest

from bench import floors
from bench.__main__ import markdown
from loadtest.runner import TrafficConfig
from recserve.v1 import gateway_pb2, gateway_pb2_grpc

ME = [sys.executable, "-m", "bench.floors"]
CHECKS = (
    "embedded Recommend p50, closed loop, 1 in flight",
    "embedded max rate",
    "split / plumbing max rate",
    "split p99 / plumbing p99 at half split's max rate",
    "rank_200 p50 in process / reference",
    "rank_200_rate20 p50 / rank_200_single_graph p50",
)


@pytest.mark.timeout(60)
def test_echo_floor_on_loopback(tmp_path):
    with floors.serving([*ME, "echo", "--port", "0"], tmp_path / "echo.log") as (pid, target):
        assert target.startswith("127.0.0.1:") and not target.endswith(":0")
        echo = asyncio.run(floors.echo_closed_loop(target, pid, 1.0, 0.2, payload_bytes=16))
    assert echo["calls"] > 10
    assert 0 < echo["p50_ms"] <= echo["p99_ms"]
    assert echo["server_cpu_ms_per_call"] > 0 and echo["client_cpu_ms_per_call"] > 0


@pytest.mark.slow
@pytest.mark.timeout(400)  # the tiny bundle is trained once per session
def test_noop_gateway_floor_answers_recommend_on_loopback(tiny_bundle, tmp_path):
    argv = [*ME, "noop-gateway", "--port", "0", "--bundle", str(tiny_bundle)]
    with floors.serving(argv, tmp_path / "noop.log") as (pid, target):
        assert target.startswith("127.0.0.1:")

        async def one() -> gateway_pb2.RecommendResponse:
            async with grpc.aio.insecure_channel(target) as channel:
                stub = gateway_pb2_grpc.GatewayStub(channel)
                return await stub.Recommend(gateway_pb2.RecommendRequest(user_id="u1", k=20))

        answer = asyncio.run(one())
        traffic = TrafficConfig(bundle_dir=str(tiny_bundle), mix="recommend=1").build(0)
        res = asyncio.run(floors.recommend_closed_loop(target, {"gateway": pid}, traffic, 1.0, 0.2))
    assert len(answer.items) == 20 and all(i.title for i in answer.items)
    assert answer.user_value.segment  # the canned user value went through the real servicer
    assert res["requests"] > 10 and res["errors"] == 0
    assert 0 < res["p50_ms"] <= res["p99_ms"]
    assert res["server_cpu_ms_per_request"]["gateway"] > 0
    assert res["load_generator_cpu_ms_per_request"] > 0


def _result() -> dict:
    step = {"rate": 400.0, "achieved_rps": 400.0, "verdict": "ok",
            "latency_ms": {"p50": 3.0, "p99": 12.0, "max": 20.0}}  # fmt: skip
    return {
        "command": "python -m bench",
        "bundle": "/tmp/b",
        "candidates": 200,
        "k": 20,
        "mix": "recommend=1",
        "started": "now",
        "slo_p99_ms": 50.0,
        "embedded_slo_p99_ms": 20.0,
        "systems": {
            "embedded": {
                "slo_p99_ms": 20.0,
                "max_rate": 400.0,
                "first_failing_rate": 560.0,
                "steps": [step],
            },
        },
        "stages": {
            "rank_200": {
                "n": 100,
                "p50_ms": 0.5,
                "p99_ms": 0.6,
                "mean_ms": 0.5,
                "cpu_ms_mean": 0.5,
            },
            "pipeline_recommend_k20": {
                "n": 100,
                "p50_ms": 1.0,
                "p99_ms": 1.2,
                "mean_ms": 1.0,
                "cpu_ms_mean": 1.0,
            },
        },
        "floors": {
            "duration_s": 1.0,
            "warmup_s": 0.2,
            "echo": {
                "calls": 100,
                "payload_bytes": 64,
                "p50_ms": 0.2,
                "p99_ms": 0.4,
                "mean_ms": 0.2,
                "server_cpu_ms_per_call": 0.15,
                "client_cpu_ms_per_call": 0.1,
            },
            "embedded_closed_loop": {
                "requests": 100,
                "errors": 0,
                "p50_ms": 1.4,
                "p99_ms": 2.0,
                "mean_ms": 1.4,
                "server_cpu_ms_per_request": {"gateway0": 1.3},
                "load_generator_cpu_ms_per_request": 0.35,
            },
        },
    }


def test_targets_table_has_the_issues_rows_with_verdicts():
    r = _result()
    rows = floors.targets(r, 2.0, "--cores", reference_rank_ms=1.0)
    assert len(rows) == len(CHECKS)
    for row, check in zip(rows, CHECKS, strict=True):
        assert row["check"].startswith(check)
    by = {c: row for c, row in zip(CHECKS, rows, strict=True)}
    # 1.4 <= 1.0 + 0.2 + 0.3
    assert by[CHECKS[0]]["verdict"] == "PASS" and by[CHECKS[0]]["ratio"] == pytest.approx(0.933)
    # ceiling = 2 cores / (1.0 + 0.15 + 0.35) ms = 1333/s; 400 / 1333 = 0.3
    assert by[CHECKS[1]]["ratio"] == pytest.approx(0.3) and by[CHECKS[1]]["verdict"] == "FAIL"
    assert "--cores" in by[CHECKS[1]]["reference"]
    assert by[CHECKS[2]]["verdict"] == by[CHECKS[3]]["verdict"] == "not measured"
    assert by[CHECKS[4]]["ratio"] == 0.5 and by[CHECKS[4]]["verdict"] == "PASS"
    assert by[CHECKS[5]]["verdict"] == "not measured"  # a single-graph bundle's stages
    assert "rater.onnx" in by[CHECKS[5]]["reference"]
    r["targets"] = rows
    md = markdown(r)
    assert "## Serving overhead: ratios and targets" in md and "## Floors" in md
    assert md.count("**PASS**") == 2 and md.count("**FAIL**") == 1
    stages = r["stages"]
    stages["rank_200_rate20"] = {**stages["rank_200"], "p50_ms": 0.3}
    stages["rank_200_single_graph"] = {**stages["rank_200"], "p50_ms": 0.6}
    row = floors.targets(r, 2.0, "--cores", 1.0)[5]
    assert row["ratio"] == 0.5 and row["verdict"] == "PASS"


def test_targets_without_floors_or_reference_say_not_measured():
    rows = floors.targets({"systems": {}}, 2.0, "os.cpu_count()", None)
    assert [r["verdict"] for r in rows] == ["not measured"] * len(CHECKS)


def test_rate_at_the_top_of_the_schedule_is_not_a_failure():
    r = _result()
    r["systems"]["embedded"]["first_failing_rate"] = None  # every step passed
    row = floors.targets(r, 2.0, "--cores", 1.0)[1]
    assert row["verdict"] == "not measured" and "--max-rate" in row["measured"]


def test_split_ratio_with_plumbing_at_the_top_of_the_schedule_is_not_measured():
    r = _result()
    plumbing = {**r["systems"]["embedded"], "first_failing_rate": None}
    r["systems"].update(plumbing=plumbing, split=r["systems"]["embedded"])
    r["split_vs_plumbing_max_rate"] = 1.0
    row = floors.targets(r, 2.0, "--cores", 1.0)[2]
    assert row["verdict"] == "not measured" and "--max-rate" in row["reference"]
    r["systems"]["plumbing"]["first_failing_rate"] = 560.0
    assert floors.targets(r, 2.0, "--cores", 1.0)[2]["verdict"] == "PASS"


def test_missing_floor_is_named():
    r = _result()
    del r["floors"]["embedded_closed_loop"]
    assert floors.targets(r, 2.0, "--cores", 1.0)[0]["reference"] == "needs --floor-embedded"
