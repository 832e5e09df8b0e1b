"""Importing the training pipeline changes nothing: the thread settings are applied by the
commands that start training (training.steps.runtime), before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_importing_the_pipeline_leaves_the_environment_unchanged() -> None:
    done = _run(
        "import os; before = dict(os.environ); import training.pipeline; "
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())"
    )
    assert done.returncode == 0, done.stderr


def test_training_commands_set_the_wait_policy_before_torch_loads() -> None:
    # The entry modules load neither torch nor the pipeline at import: their main() first calls
    # prefer_passive_omp, which libgomp only reads when torch loads.
    done = _run(
        "import os, sys; import training.__main__, training.evaluate.__main__; "
        "assert 'torch' not in sys.modules and 'OMP_WAIT_POLICY' not in os.environ; "
        "from training.steps.runtime import prefer_passive_omp; prefer_passive_omp(); "
        "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'"
    )
    assert done.returncode == 0, done.stderr
