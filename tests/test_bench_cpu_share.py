"""bench.cpu_share: the /proc reading and the argument checks (the full measurement launches
a whole stack and is a benchmark, not a test)."""

from __future__ import annotations

import os
import time

import pytest

from bench import cpu_share


def test_cpu_seconds_grow_with_work_done():
    before = cpu_share.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_share.cpu_seconds(os.getpid()) - before >= 0.1


@pytest.mark.parametrize("argv", [["--rate", "0"], ["--seconds", "-1"], ["--system", "x"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        cpu_share.main(argv)
