"""bench.embedding_optimizer runs both optimizer paths and reports their step times."""

from __future__ import annotations

import pytest

import training.models.train as train_module
from bench.embedding_optimizer import main


@pytest.mark.timeout(120)
def test_reports_dense_and_sparse_step_times(capsys) -> None:
    before = train_module.SPARSE_EMBEDDING_ROWS
    assert main(["--items", "2000", "--users", "1500", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "dense AdamW" in out and "sparse + SparseAdam" in out and "ms/step" in out
    assert before == train_module.SPARSE_EMBEDDING_ROWS  # the benchmark leaves training alone
