"""ONNX Runtime sessions: CUDA execution provider first when asked, CPU fallback, and a log line
saying which provider the session really uses."""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@functools.cache
def cuda_driver_present() -> bool:
    """True when the NVIDIA driver library loads. Without it ORT's CUDA provider cannot start, and
    asking for it only fills stderr with ORT's load errors before the CPU fallback."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def create_session(
    path: Path, *, prefer_gpu: bool = False, intra_op_threads: int = 1
) -> tuple[ort.InferenceSession, str]:
    """Returns (session, provider actually used). GPU is used only when the CUDA provider loads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # keep ORT's own warnings (e.g. missing CUDA libs) quiet
    providers = [CPU]
    if prefer_gpu and CUDA in ort.get_available_providers():
        if cuda_driver_present():
            providers = [CUDA, CPU]
        else:
            log.info("no CUDA driver on this machine: %s runs on CPU", Path(path).name)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # CUDA libraries missing or broken: CPU fallback
        if providers == [CPU]:
            raise
        log.warning("CUDA provider failed for %s (%s); falling back to CPU", path.name, exc)
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    provider = session.get_providers()[0]
    log.info("onnxruntime session %s uses %s (asked for %s)", Path(path).name, provider, providers)
    return session, provider
