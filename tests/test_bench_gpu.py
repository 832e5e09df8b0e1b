"""bench.gpu: raw ONNX Runtime vs the ranking service over gRPC, on CPU here (CUDA skipped
cleanly without a GPU; the same code adds the CUDA rows and ratios where one is present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def result(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gpu")
    argv = [
        "--artifacts", str(tiny_bundle.parent), "--batch", "8", "--candidates", "50",
        "--seconds", "0.5", "--clients", "1", "--in-flight", "8", "--out", str(out),
    ]  # fmt: skip
    assert gpu.main(argv) == 0
    assert (out / "gpu.md").read_text().startswith("# Ranking throughput")
    return json.loads((out / "gpu.json").read_text())


def test_cpu_raw_and_service_throughput_are_measured(result):
    cpu = result["devices"]["cpu"]
    assert set(cpu["raw"]) == {"run", "iobinding"}
    for row in [*cpu["raw"].values(), cpu["grpc"]]:
        assert row["calls"] > 0 and row["candidates_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert cpu["grpc_over_raw"] == pytest.approx(
        cpu["grpc"]["candidates_per_s"] / cpu["raw"]["run"]["candidates_per_s"], rel=1e-2
    )
    assert result["batch"] == 8 and result["candidates"] == 50


def test_cuda_rows_appear_only_with_a_usable_gpu(result):
    assert result["cuda_available"] == gpu.cuda_usable()
    assert ("cuda" in result["devices"]) == gpu.cuda_usable()


@pytest.mark.gpu
def test_cuda_service_and_graph_replay(result):
    if not gpu.cuda_usable():
        pytest.skip("no usable CUDA execution provider")
    cuda = result["devices"]["cuda"]
    assert set(cuda["raw"]) == {"run", "iobinding", "cuda_graph"}
    assert cuda["grpc"]["candidates_per_s"] > 0 and result["cuda_over_cpu_service"] > 0


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        gpu.main(["--batch", "0"])
