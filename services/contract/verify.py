"""Bundle checks shared by every reader of bundles (services before a switch, `recserve bundle
publish`, training's own publish): checksums and schema (Bundle.load), a compatible feature
spec, the ONNX parity self-check (parity.npz), and the LATEST pointer. No grpc, no server."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from services.contract.bundle import LATEST_POINTER, SUPPORTED_SCHEMA_VERSIONS, Bundle
from services.contract.errors import BundleError
from services.contract.features import FeatureSpec

log = logging.getLogger(__name__)

PARITY_FILE = "parity.npz"
PARITY_TOLERANCE = 1e-4
# FeatureSpec fields whose change would make one version's user state wrong for another's models.
SPEC_FIELDS_THAT_MUST_MATCH = ("history_len", "user_fields")


def read_latest(artifacts: Path) -> str | None:
    try:
        return (Path(artifacts) / LATEST_POINTER).read_text().strip() or None
    except OSError:
        return None


def spec_mismatch(old: FeatureSpec, new: FeatureSpec) -> str | None:
    """None when `new` can replace `old` under live traffic, else the reason."""
    for name in SPEC_FIELDS_THAT_MUST_MATCH:
        if getattr(old, name) != getattr(new, name):
            return f"feature_spec.{name} changed: {getattr(old, name)!r} -> {getattr(new, name)!r}"
    return None


def check_parity(bundle: Bundle, tolerance: float = PARITY_TOLERANCE) -> float | None:
    """Run every ONNX model listed in parity.npz on its stored inputs (ORT, CPU) and compare to the
    stored outputs. -> max abs error; None (with a warning) for a bundle without parity.npz.
    Keys are "<model file>:in:<input name>" and "<model file>:out:<output name>"."""
    import onnxruntime as ort  # only the validating thread pays for the import

    if PARITY_FILE not in bundle.manifest["files"]:
        log.warning("bundle %s has no %s: parity self-check skipped", bundle.version, PARITY_FILE)
        return None
    with np.load(bundle.path(PARITY_FILE), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    models = sorted({key.split(":", 1)[0] for key in arrays})
    if not models:
        raise BundleError(f"bundle {bundle.version}: {PARITY_FILE} holds no samples")
    worst = 0.0
    for model in models:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(bundle.path(model)), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feeds = {i.name: arrays[f"{model}:in:{i.name}"] for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs() if f"{model}:out:{o.name}" in arrays]
        if not names:
            raise BundleError(f"bundle {bundle.version}: no stored outputs for {model}")
        for name, got in zip(names, session.run(names, feeds), strict=True):
            want = arrays[f"{model}:out:{name}"]
            if got.shape != want.shape:
                raise BundleError(
                    f"bundle {bundle.version}: parity {model}/{name}: shape {got.shape} "
                    f"!= stored {want.shape}"
                )
            err = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
            if not err <= tolerance:  # NaN fails too
                raise BundleError(
                    f"bundle {bundle.version}: ONNX parity failure in {model}/{name}: "
                    f"max abs error {err:.3g} > {tolerance:g}"
                )
            worst = max(worst, err)
    return worst


def validate_bundle(root: Path, expected_spec: FeatureSpec | None = None) -> Bundle:
    """Everything a service checks before it switches: sha256 of every file, supported schema
    version, compatible feature spec, ONNX parity. Raises BundleError with the reason."""
    bundle = Bundle.load(root, verify=True)  # checksums + schema_version
    if bundle.manifest.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(f"bundle {bundle.version}: unsupported schema version")
    try:
        spec = bundle.feature_spec
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {bundle.version}: unreadable feature_spec: {exc}") from exc
    if expected_spec is not None:
        reason = spec_mismatch(expected_spec, spec)
        if reason is not None:
            raise BundleError(f"bundle {bundle.version}: incompatible: {reason}")
    check_parity(bundle)
    return bundle
