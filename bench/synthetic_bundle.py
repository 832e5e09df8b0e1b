"""A real, complete bundle (docs/bundle.md) for a seeded synthetic catalog at scale:

    python -m bench.synthetic_bundle --items 1000000 --users 1000000 --out /tmp/artifacts-1m

Every service loads it unchanged (checksums, parity samples, manifest schema). Tables and
embeddings come from bench.synthetic_data (clustered, seeded); the user tower and ranker are the
production model classes with constructed weights (bench.synthetic_models, which says why and
how); items.faiss is training.index's choice for the catalog size (IVF above the flat
threshold, nprobe chosen on user-tower queries); the user-value graph is a trained CDNOW one
copied from an existing bundle (`--value-from`, default the bundle `artifacts/LATEST` names),
since it scores activity features, not user ids, and so accepts any user. The manifest's
`synthetic` section records the generator arguments, step seconds, file sizes and peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (training.steps.runtime)

import numpy as np
import pandas as pd
import torch

from bench import synthetic_models
from bench.synthetic_data import generate
from services.contract.bundle import Bundle, resolve_bundle_dir
from services.contract.features import SECONDS_PER_DAY, pad_history
from training.data.schema import InteractionData
from training.encode import EncodedCatalog, build_catalog
from training.index import FLAT_MAX_ITEMS
from training.steps.publish import publish_bundle
from training.steps.runner import Steps

ONNX_LIMIT_BYTES = 2 * 1024**3  # protobuf's hard limit for a self-contained ONNX file
SAMPLE_USERS = 1000  # user-tower queries for IVF's nprobe choice; the first 255 for parity


def _log(msg: str) -> None:
    print(f"[synthetic-bundle {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _say(name: str, seconds: float) -> None:
    _log(f"{name}: {seconds:.1f}s (peak RSS {_peak_rss_mb():.0f} MB)")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def user_inputs(
    catalog: EncodedCatalog, events: pd.DataFrame, user_rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The feature service's view of these users at the end of `events` (what it would send):
    user_index int64[B], profile int64[B, P], history int64[B, H] (most recent first)."""
    ids = catalog.users.ids[user_rows - 1]
    mine = events[events["user_id"].isin(set(ids.tolist()))]
    mine = mine.sort_values("timestamp", kind="stable")
    items = catalog.items.indices(mine["item_id"].tolist())
    by_user = pd.Series(items).groupby(mine["user_id"].to_numpy(), sort=False)
    latest = {uid: grp.to_numpy()[::-1] for uid, grp in by_user}
    h = catalog.spec.history_len
    history = np.stack(
        [pad_history(latest.get(uid, np.zeros(0, np.int64)), h) for uid in ids.tolist()]
    )
    return {
        "user_index": user_rows.astype(np.int64),
        "profile": catalog.user_profiles[user_rows],
        "history": history.astype(np.int64),
    }


def _parity_inputs(inputs: dict[str, np.ndarray], n_items: int, seed: int) -> dict[str, np.ndarray]:
    """Up to 255 sample users (the first one cold: unknown, no history) x 20 random items."""
    rng = np.random.default_rng(seed)
    out = {k: v[:255].copy() for k, v in inputs.items()}
    out["user_index"][0] = 0
    out["history"][0] = 0
    out["items"] = rng.integers(0, n_items, size=(len(out["user_index"]), 20), dtype=np.int64)
    return out


def _value_source(value_from: Path | None) -> Bundle:
    root = Path(value_from) if value_from else resolve_bundle_dir(Path("artifacts"))
    if not (root / "manifest.json").is_file():
        root = resolve_bundle_dir(root)
    return Bundle.load(root)


def build_synthetic_bundle(
    out: Path,
    n_items: int,
    n_users: int,
    *,
    dim: int = 64,
    events_per_user: float = 5.0,
    seed: int = 0,
    flat_max_items: int = FLAT_MAX_ITEMS,
    value_from: Path | None = None,
    version: str | None = None,
    progress: bool = True,
) -> Path:
    """Generate, construct, export, index and publish out/<version>; returns the bundle dir."""
    torch.set_num_threads(2)
    value_bundle = _value_source(value_from)
    args = {"items": n_items, "users": n_users, "dim": dim, "seed": seed,
            "events_per_user": events_per_user, "flat_max_items": flat_max_items}  # fmt: skip
    steps = Steps(progress, say=_say)
    with steps("generate"):
        syn = generate(n_items, n_users, dim=dim, events_per_user=events_per_user, seed=seed)
    with steps("features"):
        digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()
        data = InteractionData(syn.events, syn.items, syn.users, "synthetic", digest)
        catalog = build_catalog(data)
    with steps("models"):
        tower = synthetic_models.user_tower(
            catalog, syn.user_vectors, syn.item_vectors, syn.centroids[0]
        )
        item_embeddings = np.zeros((catalog.n_items, dim), dtype=np.float32)
        item_embeddings[1:] = syn.item_vectors
        ranker = synthetic_models.ranker(catalog, tower, item_embeddings, seed)
        models = {"user_tower.onnx": tower, "ranker.onnx": ranker}
        del ranker  # only `models` holds it: publish_bundle drops it once exported
        rng = np.random.default_rng(seed + 3)
        sample = np.sort(rng.choice(np.arange(1, catalog.n_users), SAMPLE_USERS, replace=False))
        inputs = user_inputs(catalog, syn.events, sample)
        queries = synthetic_models.embed_users(tower, inputs)
    sample_in = _parity_inputs(inputs, catalog.n_items, seed)

    def copied_value(out_dir: Path, parity: dict[str, float]) -> dict[str, Any]:
        shutil.copyfile(value_bundle.path("user_value.onnx"), out_dir / "user_value.onnx")
        value = dict(value_bundle.manifest["value"])
        value["as_of_day"] = int(syn.events["timestamp"].max()) // SECONDS_PER_DAY
        value["copied_from"] = value_bundle.version
        parity["user_value.onnx"] = float(
            value_bundle.manifest["models"]["user_value.onnx"]["parity_max_abs_error"]
        )
        sizes = {p.name: p.stat().st_size for p in out_dir.iterdir() if p.is_file()}
        too_big = [n for n, s in sizes.items() if n.endswith(".onnx") and s >= ONNX_LIMIT_BYTES]
        if too_big:
            raise RuntimeError(f"ONNX files over protobuf's 2 GB: {too_big}")
        return {
            "data": {
                "source": "synthetic",
                "sha256": digest,
                "n_events": len(syn.events),
                "split": {"kind": "synthetic", "n_train": len(syn.events), "n_valid": 0},
            },
            "metrics": {},
            "value": value,
            "synthetic": {
                "generator": "bench.synthetic_data",
                "weights": "constructed (bench.synthetic_models), not trained",
                "args": args,
                "seconds": steps.seconds,
                "file_mb": {n: round(s / 2**20, 1) for n, s in sorted(sizes.items())},
                "peak_rss_mb": round(_peak_rss_mb()),
            },
        }

    return publish_bundle(
        out,
        version,
        steps,
        models=models,
        parity_inputs=sample_in,
        export_sample={k: v[1:4] for k, v in sample_in.items()},
        item_embeddings=item_embeddings,
        catalog=catalog,
        items=syn.items,
        users=syn.users,
        events=syn.events,
        sections=copied_value,
        flat_max_items=flat_max_items,
        index_queries=queries,
        index_seed=seed,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.synthetic_bundle", description=__doc__)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, required=True, help="artifacts root (gets <version>/)")
    p.add_argument("--version", default=None, help="default: UTC timestamp")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--events-per-user", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flat-max-items", type=int, default=FLAT_MAX_ITEMS)
    p.add_argument("--value-from", type=Path, default=None, help="bundle (or artifacts root)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    bundle_dir = build_synthetic_bundle(
        args.out,
        args.items,
        args.users,
        dim=args.dim,
        events_per_user=args.events_per_user,
        seed=args.seed,
        flat_max_items=args.flat_max_items,
        value_from=args.value_from,
        version=args.version,
    )
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    _log(f"built {bundle_dir} in {time.perf_counter() - start:.0f}s")
    print(json.dumps({"bundle": str(bundle_dir), **manifest["synthetic"],
                      "index": manifest["index"]}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
