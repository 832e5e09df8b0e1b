"""Publishing and rolling back bundles: artifacts/LATEST names the version services serve.

    publish(artifacts, "path/to/<version>")  # validate (as the services do), copy in, switch
    rollback(artifacts)                     # back to the version published before the current
    rollback(artifacts, to="<version>")

LATEST is rewritten atomically (temp file, fsync, os.replace, fsync of the directory).
artifacts/HISTORY is append-only, one line per switch: "<UTC time>\t<action>\t<version>", so
rollback knows what was live before. Services with RECSERVE_RELOAD_INTERVAL_S > 0 pick up the
new LATEST on their next poll (services.platform.reload).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.contract.bundle import LATEST_POINTER, MANIFEST_NAME, Bundle
from services.contract.errors import BundleError
from services.contract.verify import read_latest, validate_bundle

HISTORY_FILE = "HISTORY"


@dataclass(frozen=True)
class BundleInfo:
    version: str
    created_at: str
    latest: bool


def list_bundles(artifacts: Path) -> list[BundleInfo]:
    """Every bundle directory under artifacts, oldest first (by created_at, then name)."""
    artifacts = Path(artifacts)
    latest = read_latest(artifacts)
    found = []
    for manifest in artifacts.glob(f"*/{MANIFEST_NAME}"):
        if manifest.parent.name.startswith("."):
            continue  # a bundle still being staged
        try:
            created = str(json.loads(manifest.read_text()).get("created_at", ""))
        except (OSError, json.JSONDecodeError):
            created = ""
        name = manifest.parent.name
        found.append(BundleInfo(name, created, name == latest))
    return sorted(found, key=lambda b: (b.created_at, b.version))


def history(artifacts: Path) -> list[str]:
    """Versions made live, in order (the HISTORY file's third column)."""
    path = Path(artifacts) / HISTORY_FILE
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [parts[2] for parts in (line.split("\t") for line in lines) if len(parts) >= 3]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_latest(artifacts: Path, version: str) -> None:
    """Atomically point artifacts/LATEST at `version` (temp file + fsync + os.replace)."""
    artifacts = Path(artifacts)
    fd, tmp = tempfile.mkstemp(prefix=f".{LATEST_POINTER}.", dir=artifacts)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, artifacts / LATEST_POINTER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(artifacts)


def _append_history(artifacts: Path, action: str, version: str) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with open(Path(artifacts) / HISTORY_FILE, "a") as fh:
        fh.write(f"{now}\t{action}\t{version}\n")
        fh.flush()
        os.fsync(fh.fileno())


def _switch(artifacts: Path, version: str, action: str) -> Bundle:
    """Validate artifacts/<version> exactly as a reloading service would, then make it LATEST."""
    artifacts = Path(artifacts)
    current = read_latest(artifacts)
    expected = None
    if current is not None and (artifacts / current / MANIFEST_NAME).is_file():
        expected = Bundle.manifest_of(artifacts / current).feature_spec
    bundle = validate_bundle(artifacts / version, expected)
    if bundle.version != version:
        raise BundleError(f"directory {version} holds bundle {bundle.version}")
    if current is not None and current not in history(artifacts):
        _append_history(artifacts, "initial", current)  # e.g. published by training itself
    write_latest(artifacts, version)
    _append_history(artifacts, action, version)
    return bundle


def publish(artifacts: Path, source: Path) -> Bundle:
    """Make the bundle at `source` live: copy it under artifacts/ when it is elsewhere
    (copy to a hidden staging dir, then rename), validate it, rewrite LATEST, record HISTORY."""
    artifacts, source = Path(artifacts), Path(source)
    if not (source / MANIFEST_NAME).is_file():
        raise BundleError(f"{source} holds no {MANIFEST_NAME}")
    version = Bundle.manifest_of(source).version
    target = artifacts / version
    if source.resolve() != target.resolve():
        if target.exists():
            raise BundleError(f"{target} already exists (publish it by that path)")
        staging = Path(tempfile.mkdtemp(prefix=f".publish-{version}-", dir=artifacts))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            os.chmod(staging, 0o755)
            validate_bundle(staging)  # a corrupt copy never appears under its version name
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _switch(artifacts, version, "publish")


def previous_version(artifacts: Path) -> str:
    """What rollback goes back to: the last version live before the current one (HISTORY),
    else the newest bundle older than the current one."""
    artifacts = Path(artifacts)
    current = read_latest(artifacts)
    seen = history(artifacts)
    while seen and seen[-1] == current:
        seen.pop()
    if seen:
        return seen[-1]
    bundles = [b.version for b in list_bundles(artifacts)]
    older = bundles[: bundles.index(current)] if current in bundles else bundles
    if not older:
        raise BundleError(f"nothing to roll back to from {current!r} under {artifacts}")
    return older[-1]


def rollback(artifacts: Path, to: str | None = None) -> Bundle:
    """Switch LATEST back to `to` (default: previous_version); validated like a publish."""
    version = to or previous_version(artifacts)
    if not (Path(artifacts) / version / MANIFEST_NAME).is_file():
        raise BundleError(f"no bundle {version!r} under {artifacts}")
    return _switch(Path(artifacts), version, "rollback")
