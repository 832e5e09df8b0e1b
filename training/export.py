"""ONNX export of the user tower and the ranker, and the ORT-vs-torch parity check.

Input/output names and shapes are the contract in docs/bundle.md. Each file is self-contained
(weights and item side-feature buffers inlined as constants, no external data).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OPSET = 17
PARITY_TOLERANCE = 1e-4

USER_TOWER_INPUTS = ("user_index", "profile", "history")
USER_TOWER_OUTPUTS = ("embedding",)
RANKER_INPUTS = ("user_index", "profile", "history", "items")
RANKER_OUTPUTS = ("p_positive", "rating", "p_interact")


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree by more than the tolerance."""


def _export(
    module: nn.Module,
    path: Path,
    sample: dict[str, np.ndarray],
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    module.eval()
    args = tuple(torch.from_numpy(sample[name]) for name in input_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def export_user_tower(tower: nn.Module, path: Path, sample: dict[str, np.ndarray]) -> Path:
    """user_index int64[B], profile int64[B,P], history int64[B,H] -> embedding float32[B,D]."""
    batch = {0: "B"}
    axes = {name: batch for name in (*USER_TOWER_INPUTS, *USER_TOWER_OUTPUTS)}
    return _export(tower, path, sample, USER_TOWER_INPUTS, USER_TOWER_OUTPUTS, axes)


def export_ranker(ranker: nn.Module, path: Path, sample: dict[str, np.ndarray]) -> Path:
    """... + items int64[B,N] -> p_positive float32[B,N], rating float32[B,N],
    p_interact float32[B,N]."""
    axes: dict[str, dict[int, str]] = {n: {0: "B"} for n in ("user_index", "profile", "history")}
    axes.update({n: {0: "B", 1: "N"} for n in ("items", *RANKER_OUTPUTS)})
    return _export(ranker, path, sample, RANKER_INPUTS, RANKER_OUTPUTS, axes)


@torch.no_grad()
def parity_max_abs_error(
    module: nn.Module,
    path: Path,
    inputs: dict[str, np.ndarray],
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Max |ORT(CPU) - torch| over every output on `inputs` (the ONNX outputs in order against
    the module's returned tensors, same count); raises ParityError above tolerance."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    onnx_out = session.run(outputs, {name: inputs[name] for name in names})
    module.eval()
    torch_out = module(*(torch.from_numpy(inputs[name]) for name in names))
    if isinstance(torch_out, torch.Tensor):
        torch_out = (torch_out,)
    if len(torch_out) != len(outputs):
        raise ParityError(f"{path.name}: {len(outputs)} ONNX outputs, torch gives {len(torch_out)}")
    error, worst = 0.0, outputs[0]
    for name, got, want in zip(outputs, onnx_out, torch_out, strict=True):
        if got.shape != tuple(want.shape):
            raise ParityError(
                f"{path.name}: {name}: ORT shape {got.shape} != torch {tuple(want.shape)}"
            )
        diff = float(np.max(np.abs(got - want.numpy()))) if got.size else 0.0
        if diff > error or np.isnan(diff):
            error, worst = diff, name
    if not error <= tolerance:
        raise ParityError(
            f"{path.name}: ORT vs torch max abs error {error:.3g} > {tolerance:g} (in {worst})"
        )
    return error


def _dtype(onnx_type: str) -> str:
    name = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(name, name)


def describe_onnx(path: Path) -> dict[str, Any]:
    """Input/output names, element types and shapes (symbolic axes as names) of an ONNX file."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def _io(args: list[Any]) -> list[dict[str, Any]]:
        return [{"name": a.name, "dtype": _dtype(a.type), "shape": list(a.shape)} for a in args]

    return {"inputs": _io(session.get_inputs()), "outputs": _io(session.get_outputs())}


# --- parity samples stored in the bundle (services re-check them before a hot reload) ---------

PARITY_FILE = "parity.npz"  # services.common.reload.PARITY_FILE
PARITY_BATCH = 8
PARITY_CANDIDATES = 16


def _sample_input(
    name: str, dtype: str, shape: list[Any], rng: np.random.Generator, limits: dict[str, Any]
) -> np.ndarray:
    """A valid input of this name: indices inside their vocabularies, floats in [0, 2)."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if name == "user_index":
        return rng.integers(0, limits["n_users"] + 1, size=PARITY_BATCH, dtype=np.int64)
    if name == "profile":
        cards = limits["profile_cardinalities"]
        return np.stack([rng.integers(0, c, size=PARITY_BATCH) for c in cards], 1).astype(np.int64)
    if name == "history":
        size = (PARITY_BATCH, limits["history_len"])
        return rng.integers(0, limits["n_items"] + 1, size=size, dtype=np.int64)
    if name == "input_ids":  # content encoder: ordinary word pieces of MiniLM's vocabulary
        return rng.integers(1_000, 29_000, size=(PARITY_BATCH, 12), dtype=np.int64)
    if name == "attention_mask":
        return np.ones((PARITY_BATCH, 12), dtype=np.int64)
    if name == "items":
        size = (PARITY_BATCH, PARITY_CANDIDATES)
        return rng.integers(0, limits["n_items"] + 1, size=size, dtype=np.int64)
    size = tuple(PARITY_BATCH if d is None else d for d in dims)
    if dtype.startswith("int"):
        return np.zeros(size, dtype=dtype)
    return rng.uniform(0.0, 2.0, size=size).astype(dtype)


def write_parity_samples(out_dir: Path, limits: dict[str, Any], seed: int = 0) -> Path:
    """parity.npz: for every *.onnx in out_dir, sample inputs and ORT's (CPU) outputs on them,
    keys "<file>:in:<name>" / "<file>:out:<name>" (no pickle). A service re-runs the models on
    the inputs before switching to the bundle and refuses it when the outputs differ.

    limits: n_users, n_items, history_len, profile_cardinalities."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for path in sorted(Path(out_dir).glob("*.onnx")):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {
            i.name: _sample_input(i.name, _dtype(i.type), list(i.shape), rng, limits)
            for i in session.get_inputs()
        }
        outputs = [o.name for o in session.get_outputs()]
        for name, value in feeds.items():
            arrays[f"{path.name}:in:{name}"] = value
        for name, value in zip(outputs, session.run(outputs, feeds), strict=True):
            arrays[f"{path.name}:out:{name}"] = value
    target = Path(out_dir) / PARITY_FILE
    with open(target, "wb") as fh:
        np.savez(fh, **arrays)
    return target
