"""ONNX export of the user tower and the ranker, and the ORT-vs-torch parity check.

Input/output names and shapes are the contract in docs/bundle.md. Each file is self-contained
(weights inlined as constants, no external data). Item side features (tags, declared
attributes, item-tower vectors) are graph *inputs*, gathered by serving from its item table
(services.contract.item_table); a graph declares only the inputs it reads (no tag inputs for a
dataset without tags, no attribute inputs without declared item attributes, no item_vectors
for a ranker without the retrieval score).

The samples given to export_* and parity_max_abs_error stay index-only dicts (user_index,
profile, history[, items]): the feature inputs are gathered here from the model's own
training tables (`with_item_features`).
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

from services.contract.features import HISTORY_EVENT_INPUTS, UNKNOWN_AGE
from services.contract.model_inputs import QUERY_INPUT  # the ranker's user_embedding

OPSET = 17
PARITY_TOLERANCE = 1e-4

HISTORY_FEATURE_INPUTS = ("history_tags", "history_attrs")
ITEM_FEATURE_INPUTS = ("item_tags", "item_attrs", "item_vectors")
# history_age / history_kind: declared only by a tower that reads them (the exporter drops
# inputs a graph does not use), e.g. the transformer with seq_time / seq_kinds
USER_TOWER_INPUTS = ("user_index", "profile", "history", *HISTORY_FEATURE_INPUTS,
                     *HISTORY_EVENT_INPUTS)  # fmt: skip
USER_TOWER_OUTPUTS = ("embedding",)
RANKER_INPUTS = ("user_index", "profile", "history", "items", *HISTORY_FEATURE_INPUTS,
                 *ITEM_FEATURE_INPUTS)  # fmt: skip
RANKER_OUTPUTS = ("p_positive", "rating", "p_interact")
# rater.onnx (training.models.rating.RatingGraph): the rating model alone, same inputs as
# ranker.onnx (those it reads); ranker.onnx is then p_interact only (InteractGraph).
RATER_OUTPUTS = ("p_positive", "rating")


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


def _first(module: nn.Module, kind: type) -> Any:
    return next((m for m in module.modules() if isinstance(m, kind)), None)


def with_item_features(module: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Index-only inputs -> the same plus the item feature inputs, gathered from the training
    tables the module holds (its first ItemFeatureArch; the item-tower vectors of its
    RetrievalScore, if any): history_tags float32[B,H,T], history_attrs int64[B,H,A] and, with
    `items`, item_tags float32[B,N,T], item_attrs int64[B,N,A], item_vectors float32[B,N,D]
    (D = 0 without a retrieval score). Inputs already given are kept."""
    from training.models.layers import ItemFeatureArch
    from training.models.ranker import RetrievalScore

    arch = _first(module, ItemFeatureArch)
    if arch is None:
        raise ValueError(f"{type(module).__name__} holds no item feature tables")
    tags = arch.item_tags.numpy()
    attrs = arch.item_attrs.numpy()
    out = dict(inputs)
    gathered = {"history_tags": (tags, "history"), "history_attrs": (attrs, "history")}
    if "items" in inputs:
        retrieval = _first(module, RetrievalScore)
        vectors = (
            retrieval.item_embeddings.numpy().astype(np.float32, copy=False)
            if retrieval is not None
            else np.zeros((len(tags), 0), dtype=np.float32)
        )
        gathered.update(item_tags=(tags, "items"), item_attrs=(attrs, "items"))
        gathered["item_vectors"] = (vectors, "items")
    for name, (table, rows) in gathered.items():
        if name not in out:
            out[name] = table[inputs[rows]]
    if "history" in inputs:  # events not given: every entry unknown
        shape = np.shape(inputs["history"])
        out.setdefault("history_age", np.full(shape, UNKNOWN_AGE, dtype=np.float32))
        out.setdefault("history_kind", np.zeros(shape, dtype=np.int64))
    if "items" in inputs and QUERY_INPUT not in out:
        retrieval = _first(module, RetrievalScore)
        if retrieval is not None:  # what serving feeds QueryGiven: the tower's output
            with torch.no_grad():
                query = retrieval.user_tower.eval()(
                    *(torch.from_numpy(out[n]) for n in USER_TOWER_INPUTS if n in out)
                )
            out[QUERY_INPUT] = query.numpy().astype(np.float32, copy=False)
    return out


class QueryGiven(nn.Module):
    """A ranking graph with a frozen retrieval score, exported with the user tower's output as
    an input (QUERY_INPUT) instead of the tower: the same math (RetrievalScore.given), without
    a second run of the tower per request."""

    def __init__(self, graph: nn.Module, retrieval: nn.Module) -> None:
        super().__init__()
        self.graph = graph
        self.retrieval = retrieval
        self.OUTPUTS = tuple(getattr(graph, "OUTPUTS", RANKER_OUTPUTS))

    def forward(self, *args: torch.Tensor) -> Any:
        *inputs, query = args
        with self.retrieval.given(query):
            return self.graph(*inputs)


def export_user_tower(tower: nn.Module, path: Path, sample: dict[str, np.ndarray]) -> Path:
    """user_index int64[B], profile int64[B,P], history int64[B,H], history_tags
    float32[B,H,T], history_attrs int64[B,H,A] -> embedding float32[B,D]. `sample` may be
    index-only (the feature inputs are gathered from the tower's tables)."""
    batch = {0: "B"}
    axes = {name: batch for name in (*USER_TOWER_INPUTS, *USER_TOWER_OUTPUTS)}
    sample = with_item_features(tower, sample)
    return _export(tower, path, sample, USER_TOWER_INPUTS, USER_TOWER_OUTPUTS, axes)


def export_ranker(ranker: nn.Module, path: Path, sample: dict[str, np.ndarray]) -> Path:
    """... + items int64[B,N], item_tags float32[B,N,T], item_attrs int64[B,N,A],
    item_vectors float32[B,N,D] -> p_positive float32[B,N], rating float32[B,N],
    p_interact float32[B,N] (the module's OUTPUTS when it names them: InteractGraph's
    p_interact, RatingGraph's p_positive and rating). `sample` may be index-only. rater.onnx
    is exported by this function too (same inputs). A graph with a frozen retrieval score
    (RetrievalScore) takes user_embedding float32[B,D] too, instead of running the user tower
    (QueryGiven)."""
    outputs = tuple(getattr(ranker, "OUTPUTS", RANKER_OUTPUTS))
    axes: dict[str, dict[int, str]] = {
        n: {0: "B"}
        for n in ("user_index", "profile", "history", *HISTORY_FEATURE_INPUTS, QUERY_INPUT)
    }
    axes.update({n: {0: "B", 1: "N"} for n in ("items", *ITEM_FEATURE_INPUTS, *outputs)})
    sample = with_item_features(ranker, sample)
    from training.models.ranker import RetrievalScore

    retrieval = _first(ranker, RetrievalScore)
    if retrieval is None:
        return _export(ranker, path, sample, RANKER_INPUTS, outputs, axes)
    module, names = QueryGiven(ranker, retrieval), (*RANKER_INPUTS, QUERY_INPUT)
    return _export(module, path, sample, names, outputs, axes)


@torch.no_grad()
def parity_max_abs_error(
    module: nn.Module,
    path: Path,
    inputs: dict[str, np.ndarray],
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Max |ORT(CPU) - torch| over every output on `inputs` (the ONNX outputs in order against
    the module's returned tensors, same count); raises ParityError above tolerance.

    `inputs` may be index-only: ORT gets the item feature inputs its graph declares, gathered
    from the module's training tables (`with_item_features`), and torch is called index-only,
    so it reads those features the training way: the check covers the feature inputs too.
    With feature inputs given (e.g. rows of items added after training), torch gets them
    as well (positionally, in USER_TOWER_INPUTS / RANKER_INPUTS order)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    full = with_item_features(module, inputs)
    onnx_out = session.run(outputs, {name: full[name] for name in names})
    module.eval()
    order = RANKER_INPUTS if "items" in names else USER_TOWER_INPUTS
    given = [n for n in order if n in full]  # features given: torch reads them too
    if not any(n in inputs for n in (*HISTORY_FEATURE_INPUTS, *ITEM_FEATURE_INPUTS)):
        # the index inputs, all of them: a graph may not read some (rater.onnx without SVD++
        # reads no profile or history), torch takes them positionally
        given = [n for n in order if n in ("user_index", "profile", "history", "items")]
        given = [n for n in given if n in full]
    args = [torch.from_numpy(full[name]) for name in given]
    if "items" not in names:  # a user tower: the history's events by name (given or unknown)
        events = {n: torch.from_numpy(full[n]) for n in HISTORY_EVENT_INPUTS if n not in given}
        torch_out = module(*args, **events)
    else:
        torch_out = _with_query(module, full, names, args)
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


def _with_query(
    module: nn.Module, full: dict[str, np.ndarray], names: list[str], args: list
) -> Any:
    """A ranking graph in torch, with its frozen retrieval score's query the one ORT got
    (QUERY_INPUT, the tower's output) when the graph takes it: what QueryGiven exports."""
    from training.models.ranker import RetrievalScore

    retrieval = _first(module, RetrievalScore)
    if retrieval is None or QUERY_INPUT not in names:
        return module(*args)
    with retrieval.given(torch.from_numpy(full[QUERY_INPUT])):
        return module(*args)


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

PARITY_FILE = "parity.npz"  # services.contract.verify.PARITY_FILE
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
    if name.startswith("item_"):  # item_tags / item_attrs / item_vectors: [B, N, ...]
        dims[:2] = [PARITY_BATCH, PARITY_CANDIDATES]
    size = tuple(PARITY_BATCH if d is None else d for d in dims)
    if name in ("item_vectors", QUERY_INPUT):  # unit vectors, as the towers give them (a
        # uniform [0, 2) query saturates the ranker's sigmoid: a broken graph would pass)
        vectors = rng.normal(size=size)
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(dtype)
    if name.endswith("_tags"):  # multi-hot
        return rng.integers(0, 2, size=size).astype(dtype)
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
