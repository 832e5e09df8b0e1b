"""`python -m loadtest` end to end against a fake gateway: JSON, Markdown and PNGs written."""

from __future__ import annotations

import json
from concurrent import futures

import grpc
import pytest

from loadtest.__main__ import main
from recserve.v1 import gateway_pb2, gateway_pb2_grpc


class Echo(gateway_pb2_grpc.GatewayServicer):
    def Recommend(self, request, context):
        return gateway_pb2.RecommendResponse(model_version="fake")

    def Feedback(self, request, context):
        return gateway_pb2.FeedbackResponse(accepted=1)

    def PredictRatings(self, request, context):
        return gateway_pb2.PredictRatingsResponse(model_version="fake")


@pytest.fixture
def echo_target():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_run_writes_json_markdown_and_plots(echo_target, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--target",
                echo_target,
                "--rate",
                "100",
                "--duration",
                "1",
                "--schedule",
                "constant",
                "--warmup",
                "0.5",
                "--out",
                str(out),
                "--quiet",
                "--artifacts",
                str(tmp_path / "none"),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert result["requests"] == 100 and result["warmup_requests"] == 50
    assert {"p50", "p90", "p99", "p99.9", "max"} <= set(result["latency_ms"])
    assert result["command"].startswith("python -m loadtest run")
    assert "| p50 ms |" in (out / "summary.md").read_text()
    assert (out / "latency.png").stat().st_size > 1000


def test_step_writes_the_max_rate(echo_target, tmp_path):
    out = tmp_path / "step"
    assert (
        main(
            [
                "step",
                "--target",
                echo_target,
                "--rates",
                "50,100",
                "--slo-p99-ms",
                "1000",
                "--duration",
                "0.5",
                "--warmup",
                "0.2",
                "--out",
                str(out),
                "--quiet",
                "--artifacts",
                str(tmp_path / "none"),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert result["max_rate"] == 100 and len(result["steps"]) == 2
    assert (out / "steps.png").exists() and (out / "latency.png").exists()


def test_remote_targets_are_refused_without_allow_remote(tmp_path, capsys):
    """One usage error line and exit 2, as for any bad argument: no traceback."""
    for target in ("10.1.2.3:50051", "ipv4:127.0.0.1:5001,10.1.2.3:50051"):
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--target", target, "--out", str(tmp_path), "--quiet"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "error: target" in err and "allow-remote" in err and "Traceback" not in err
