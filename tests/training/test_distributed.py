"""Two DDP processes on CPU (gloo, launched by torchrun) reach the quality of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(1200)
def test_two_process_ddp_matches_one_process(
    tiny_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "training", "train", "--tiny", "--no-progress",
        "--data-dir", str(data_dir), "--artifacts", str(artifacts),
    ]  # fmt: skip
    env = {**os.environ, "RECSERVE_DDP_BACKEND": "gloo", "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("bundle: ") == 1  # only rank 0 publishes and reports

    version = (artifacts / "LATEST").read_text().strip()
    bundles = [p for p in artifacts.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert [p.name for p in bundles] == [version]
    ddp = json.loads((artifacts / version / "manifest.json").read_text())["metrics"]
    one = json.loads((tiny_bundle / "manifest.json").read_text())["metrics"]

    # Same data, seed, global batch and steps; only the in-batch negatives per rank differ.
    assert ddp["retrieval"]["recall_at_20"] == pytest.approx(
        one["retrieval"]["recall_at_20"], abs=0.03
    )
    assert ddp["retrieval"]["ndcg_at_10"] == pytest.approx(one["retrieval"]["ndcg_at_10"], abs=0.03)
    assert ddp["ranker"]["auc_given_interaction"] == pytest.approx(
        one["ranker"]["auc_given_interaction"], abs=0.03
    )
    assert ddp["ranker"]["rmse"] == pytest.approx(one["ranker"]["rmse"], abs=0.05)
    assert ddp["retrieval"]["recall_at_20"] > ddp["retrieval"]["popularity_recall_at_20"]
