"""Bundle copies for the hot-reload tests: re-versioned, corrupted or altered on purpose."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from services.contract.bundle import LATEST_POINTER, MANIFEST_NAME, sha256_file


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / MANIFEST_NAME).read_text())


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def clone(
    source: Path,
    artifacts: Path,
    version: str,
    edit: Callable[[Path, dict[str, Any]], None] | None = None,
) -> Path:
    """Copy a bundle to artifacts/<version> with manifest version = version; `edit(root,
    manifest)` may change files and the manifest before it is written."""
    root = artifacts / version
    shutil.copytree(source, root)
    manifest = read_manifest(root)
    manifest["version"] = version
    if edit is not None:
        edit(root, manifest)
    write_manifest(root, manifest)
    return root


def point_latest(artifacts: Path, version: str) -> None:
    (artifacts / LATEST_POINTER).write_text(version + "\n")


def perturb_onnx(root: Path, manifest: dict[str, Any], name: str = "ranker.onnx") -> None:
    """Shift every float initializer of one model a little, and re-checksum it: the manifest is
    consistent, the numbers are not the ones the parity samples were made with."""
    model = onnx.load(str(root / name))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(arr + np.float32(0.05), init.name))
    onnx.save(model, str(root / name))
    manifest["files"][name] = sha256_file(root / name)
