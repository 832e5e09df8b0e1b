"""Export the user-value net to ONNX (input `features` float32[B, F]; outputs `p_active`,
`expected_transactions`, `expected_value`, float32[B]) and check ORT against torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from training.value.model import StackedEnsemble, ValueEnsemble, ValueNet

INPUT_NAME = "features"
OUTPUT_NAMES: tuple[str, ...] = ("p_active", "expected_transactions", "expected_value")
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree by more than PARITY_TOLERANCE."""


def export_value_model(net: ValueNet | ValueEnsemble, path: Path, n_features: int) -> None:
    """An ensemble whose members share their layout is exported stacked (StackedEnsemble: the
    same math, about a third of the nodes for three members); parity_max_abs_error checks the
    file against `net` itself."""
    net = net.eval()
    if isinstance(net, ValueEnsemble) and StackedEnsemble.stackable(net):
        net = StackedEnsemble(net).eval()
    example = torch.zeros(2, n_features, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"features": {0: batch}},
            external_data=False,
            dynamo=True,
            verbose=False,
        )


def parity_max_abs_error(net: ValueNet | ValueEnsemble, path: Path, features: np.ndarray) -> float:
    """Max |ORT - torch| over all outputs for float32[B, F] inputs; raises ParityError when it
    exceeds PARITY_TOLERANCE (relative to max(1, |value|) for the money output)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: features.astype(np.float32)})
    with torch.no_grad():
        want = [t.numpy() for t in net.eval()(torch.from_numpy(features.astype(np.float32)))]
    worst = 0.0
    for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
        if g.shape != w.shape:
            raise ParityError(f"{name}: ONNX shape {g.shape} != torch shape {w.shape}")
        err = np.abs(g.astype(np.float64) - w) / np.maximum(1.0, np.abs(w))
        worst = max(worst, float(err.max(initial=0.0)))
    if not np.isfinite(worst) or worst > PARITY_TOLERANCE:
        raise ParityError(f"ONNX parity error {worst:.3g} exceeds {PARITY_TOLERANCE}")
    return worst
