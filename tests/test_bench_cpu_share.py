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


@pytest.mark.parametrize("argv", [["--system", "split,x"], ["--system", ","]])
def test_a_bad_system_in_the_list_is_refused(argv):
    with pytest.raises(SystemExit) as exc:
        cpu_share.main(argv)
    assert exc.value.code == 2


def test_by_library_without_perf_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(cpu_share.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exc:
        cpu_share.main(["--by-library"])
    assert exc.value.code == 2
    assert "perf" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dso", "group"),
    [
        ("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0", "Python interpreter"),
        ("/v/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so", "numpy"),
        ("/v/onnxruntime/capi/onnxruntime_pybind11_state.cpython-311.so", "ONNX Runtime"),
        ("/v/faiss/libfaiss.so", "FAISS"),
        ("/v/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so", "gRPC core (cygrpc)"),
        ("/v/google/_upb/_message.abi3.so", "protobuf (upb)"),
        ("/v/uvloop/loop.cpython-311-x86_64-linux-gnu.so", "event loop (uvloop, asyncio)"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "C runtime (libc, malloc, memcpy)"),
        ("[kernel.kallsyms]", "kernel (syscalls, loopback TCP)"),
        ("/usr/lib/libsomething.so", "other"),
    ],
)
def test_shared_objects_fall_in_their_group(dso, group):
    assert cpu_share.library_group(dso) == group


def test_perf_samples_add_up_per_process_and_library():
    script = "\n".join(
        [
            "  101    1001001      7f8f17aab864 (/v/grpc/_cython/cygrpc.cpython-311.so)",
            "  101    2002002  ffffffff813aeb13 ([kernel.kallsyms])",
            "  101    1001001      7fe94befb677 (/lib/libpython3.11.so.1.0)",
            "  202    3003003      7fe94befb677 (/lib/libpython3.11.so.1.0)",
            "  202    1001001      7f97f8d73f97 (/v/numpy/_core/_multiarray_umath.so)",
            "  303    1001001 ",  # a sample perf could not place: skipped
            "not a sample line",
        ]
    )
    periods = cpu_share.parse_perf_script(script)
    assert periods == {
        101: {
            "/v/grpc/_cython/cygrpc.cpython-311.so": 1001001,
            "[kernel.kallsyms]": 2002002,
            "/lib/libpython3.11.so.1.0": 1001001,
        },
        202: {"/lib/libpython3.11.so.1.0": 3003003, "/v/numpy/_core/_multiarray_umath.so": 1001001},
    }
    # 1,000 requests: 1,001,001 ns of samples = 0.001 ms per request
    by_process = cpu_share.ms_by_library(periods, {"gateway": 101, "ranking": 202}, 1000)
    assert list(by_process["gateway"]) == list(cpu_share.GROUP_NAMES)
    kernel = by_process["gateway"]["kernel (syscalls, loopback TCP)"]
    assert kernel == pytest.approx(0.002, abs=1e-4)
    assert by_process["ranking"]["Python interpreter"] == pytest.approx(0.003, abs=1e-4)
    assert by_process["ranking"]["ONNX Runtime"] == 0.0
    total = cpu_share.total_by_library(by_process)
    assert total["Python interpreter"] == pytest.approx(0.004, abs=1e-4)
    table = cpu_share.library_table(
        {"plumbing": {g: 0.0 for g in cpu_share.GROUP_NAMES}, "split": total}, difference=True
    )
    lines = table.splitlines()
    assert lines[0] == "| library | plumbing | split | split - plumbing |"
    assert "| Python interpreter | 0.000 ms | 0.004 ms | +0.004 ms |" in lines
    assert lines[-1] == "| **all** | **0.000 ms** | **0.008 ms** | **+0.008 ms** |"


def test_a_missing_bundle_is_one_line_and_exit_1(tmp_path, capsys):
    assert cpu_share.main(["--artifacts", str(tmp_path), "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert "no bundle published" in err
    assert "Traceback" not in err


def test_perf_failing_is_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    def refused(*args, **kwargs):
        raise cpu_share.PerfError("perf record failed: perf_event_paranoid setting is 4")

    monkeypatch.setattr(cpu_share.shutil, "which", lambda name: "/usr/bin/perf")
    monkeypatch.setattr(cpu_share, "measure", refused)
    assert cpu_share.main(["--by-library", "--out", str(tmp_path)]) == 1
    assert "perf_event_paranoid" in capsys.readouterr().err
