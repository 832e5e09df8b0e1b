"""Built-in reference models, trained and scored on the same splits as ours (numpy/scipy only).

Top-K (implicit feedback: every rated item is a positive):
    Popularity            items by number of training users
    ItemKNN               cosine item-item similarity, top-n neighbours per item (Sarwar 2001)
    ImplicitALS           weighted matrix factorisation, confidence 1 + alpha (Hu et al. 2008)
    EASE                  closed-form item-item linear autoencoder, zero diagonal (Steck 2019)
Rating:
    GlobalMean, Biases    mu, and mu + b_u + b_i (regularised, alternating least squares)
    BiasedMF              mu + b_u + b_i + p_u·q_i by ALS with weighted-lambda regularisation

Shapes: U = users of the training matrix, I = catalog items, F = factors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Training events as a user × item matrix over a fixed item catalog."""

    user_ids: np.ndarray  # str[U]
    item_ids: np.ndarray  # str[I]
    binary: sp.csr_matrix  # float64[U, I], 1 where the user interacted
    ratings: sp.csr_matrix  # float64[U, I], the rating (last one when repeated)

    @classmethod
    def from_events(
        cls, events: pd.DataFrame, item_ids: Sequence[str] | None = None
    ) -> Interactions:
        items = np.asarray(
            sorted(set(events["item_id"])) if item_ids is None else list(item_ids), dtype=object
        )
        users = np.asarray(sorted(set(events["user_id"])), dtype=object)
        u_row = {u: i for i, u in enumerate(users)}
        i_col = {t: i for i, t in enumerate(items)}
        known = events["item_id"].map(i_col).notna().to_numpy()
        ev = events[known]
        rows = ev["user_id"].map(u_row).to_numpy(np.int64)
        cols = ev["item_id"].map(i_col).to_numpy(np.int64)
        shape = (len(users), len(items))
        ratings = sp.coo_matrix(
            (np.nan_to_num(ev["rating"].to_numpy(np.float64), nan=1.0), (rows, cols)), shape=shape
        ).tocsr()
        ratings.sum_duplicates()
        binary = sp.csr_matrix((np.ones_like(rows, dtype=np.float64), (rows, cols)), shape=shape)
        binary.data[:] = 1.0
        return cls(users, items, binary, ratings)

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """-1 for users not in training."""
        lookup = {u: i for i, u in enumerate(self.user_ids)}
        return np.asarray([lookup.get(u, -1) for u in user_ids], dtype=np.int64)


class Popularity:
    name = "popularity"

    def fit(self, data: Interactions) -> Popularity:
        self.counts = np.asarray(data.binary.sum(axis=0)).ravel()
        return self

    def scores(self, data: Interactions, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(rows), len(self.counts))).copy()


class ItemKNN:
    name = "item_knn"

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours

    def fit(self, data: Interactions) -> ItemKNN:
        x = data.binary.tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xn = x.multiply(1.0 / np.maximum(norms, 1e-12)).tocsc()
        sim = (xn.T @ xn).toarray()
        np.fill_diagonal(sim, 0.0)
        if self.neighbours < sim.shape[0]:
            # Keep each item's top-n neighbours (column j: the items that vote for j).
            cut = np.partition(sim, -self.neighbours, axis=0)[-self.neighbours]
            sim[sim < cut[None, :]] = 0.0
        self.similarity = sim
        return self

    def scores(self, data: Interactions, rows: np.ndarray) -> np.ndarray:
        return np.asarray(data.binary[rows] @ self.similarity)


def _row_blocks(
    matrix: sp.csr_matrix, chunk: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Non-empty rows of `matrix` in chunks of similar length: (rows int[B], cols int[B, L]
    padded with n_cols (point it at a zero row), vals float[B, L] padded with 0, n int[B]).
    Lets each ALS half step solve B small systems per numpy call instead of one per Python
    iteration."""
    lengths = np.diff(matrix.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        n = lengths[rows]
        cols = np.full((len(rows), int(n.max())), matrix.shape[1], dtype=np.int64)
        vals = np.zeros(cols.shape)
        for b, r in enumerate(rows):
            lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
            cols[b, : hi - lo] = matrix.indices[lo:hi]
            vals[b, : hi - lo] = matrix.data[lo:hi]
        yield rows, cols, vals, n


def _with_zero_row(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, np.zeros((1, *a.shape[1:]))])


def _implicit_half_step(
    target: sp.csr_matrix, fixed: np.ndarray, alpha: float, reg: float
) -> np.ndarray:
    """Implicit-ALS half step: for each row r, solve
    (FᵀF + alpha·F_rᵀF_r + reg·I) x = (1 + alpha)·F_rᵀ1."""
    out = np.zeros((target.shape[0], fixed.shape[1]))
    base = fixed.T @ fixed + reg * np.eye(fixed.shape[1])
    padded = _with_zero_row(fixed)
    for rows, cols, _, _ in _row_blocks(target):
        x = padded[cols]  # [B, L, F]; padding rows are zero
        gram = base + alpha * (x.transpose(0, 2, 1) @ x)
        rhs = (1.0 + alpha) * x.sum(axis=1)
        out[rows] = np.linalg.solve(gram, rhs[..., None])[..., 0]
    return out


class ImplicitALS:
    name = "implicit_als"

    def __init__(
        self, factors: int = 64, reg: float = 10.0, alpha: float = 10.0, iterations: int = 12,
        seed: int = 0,
    ) -> None:  # fmt: skip
        self.factors, self.reg, self.alpha = factors, reg, alpha
        self.iterations, self.seed = iterations, seed

    def fit(self, data: Interactions) -> ImplicitALS:
        rng = np.random.default_rng(self.seed)
        n_users, n_items = data.binary.shape
        self.user_factors = rng.normal(0, 0.01, (n_users, self.factors))
        self.item_factors = rng.normal(0, 0.01, (n_items, self.factors))
        by_user, by_item = data.binary.tocsr(), data.binary.T.tocsr()
        for _ in range(self.iterations):
            y = self.item_factors
            self.user_factors = _implicit_half_step(by_user, y, self.alpha, self.reg)
            x = self.user_factors
            self.item_factors = _implicit_half_step(by_item, x, self.alpha, self.reg)
        return self

    def scores(self, data: Interactions, rows: np.ndarray) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T


class EASE:
    """B = argmin ||X - XB||² + lam·||B||², diag(B) = 0, in closed form: P = (XᵀX + lam·I)⁻¹,
    B = -P / diag(P) off the diagonal. Items with fewer than `min_users` training users are
    left out of the I × I solve (they score 0): it costs O(I³) time and I² float64 memory."""

    name = "ease"

    def __init__(self, lam: float = 500.0, min_users: int = 1) -> None:
        self.lam, self.min_users = lam, min_users

    def fit(self, data: Interactions) -> EASE:
        x = data.binary.tocsc()
        self.columns = np.flatnonzero(np.asarray(x.sum(axis=0)).ravel() >= self.min_users)
        xs = x[:, self.columns]
        gram = (xs.T @ xs).toarray()
        gram[np.diag_indices_from(gram)] += self.lam
        p = np.linalg.inv(gram)
        del gram
        self.weights = p / -np.diag(p)[None, :]
        np.fill_diagonal(self.weights, 0.0)
        return self

    def scores(self, data: Interactions, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), data.binary.shape[1]))
        out[:, self.columns] = data.binary[rows][:, self.columns] @ self.weights
        return out


TopKModel = Popularity | ItemKNN | ImplicitALS | EASE


def recommend(
    model: TopKModel,
    data: Interactions,
    user_ids: Sequence[str],
    k: int,
    batch: int = 512,
    *,
    exclude_seen: bool = True,
) -> dict[str, list[str]]:
    """Full ranking over the catalog minus each user's training items (all items when not
    exclude_seen: groceries are bought again) -> {user: top-k ids}. Users unknown to training
    get the most popular items."""
    rows = data.user_rows(user_ids)
    popular = np.asarray(data.binary.sum(axis=0)).ravel()
    out: dict[str, list[str]] = {}
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        known = np.maximum(chunk, 0)
        scores = np.asarray(model.scores(data, known), dtype=np.float64)
        scores[chunk < 0] = popular
        if exclude_seen:
            seen = data.binary[known].toarray() > 0
            seen[chunk < 0] = False
            scores[seen] = -np.inf
        # A catalog smaller than k: every item, ranked (and then minus the user's own).
        kth = min(k, scores.shape[1]) - 1
        top = np.argpartition(-scores, kth, axis=1)[:, : kth + 1]
        ranked = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-ranked, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        allowed = np.isfinite(np.take_along_axis(ranked, order, axis=1))
        for user, items, ok in zip(user_ids[start : start + batch], top, allowed, strict=True):
            out[str(user)] = data.item_ids[items[ok]].tolist()
    return out


# ---- rating references ------------------------------------------------------------------------


@dataclass
class _Index:
    users: dict[str, int]
    items: dict[str, int]

    @classmethod
    def of(cls, events: pd.DataFrame) -> _Index:
        return cls(
            {u: i for i, u in enumerate(sorted(set(events["user_id"])))},
            {t: i for i, t in enumerate(sorted(set(events["item_id"])))},
        )

    def rows(self, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        u = events["user_id"].map(self.users).fillna(-1).to_numpy(np.int64)
        i = events["item_id"].map(self.items).fillna(-1).to_numpy(np.int64)
        return u, i


class GlobalMean:
    name = "global_mean"

    def fit(self, train: pd.DataFrame) -> GlobalMean:
        self.mu = float(train["rating"].mean())
        return self

    def predict(self, pairs: pd.DataFrame) -> np.ndarray:
        return np.full(len(pairs), self.mu)


class BiasedMF:
    """mu + b_u + b_i + p_u·q_i. factors=0 gives the bias-only baseline. ALS with
    weighted-lambda regularisation (reg · n_ratings of the row), biases folded into the solve."""

    def __init__(
        self, factors: int = 20, reg: float = 0.08, bias_reg: float = 5.0, iterations: int = 15,
        seed: int = 0,
    ) -> None:  # fmt: skip
        self.factors, self.reg, self.bias_reg = factors, reg, bias_reg
        self.iterations, self.seed = iterations, seed
        self.name = "biased_mf" if factors else "biases"

    def fit(self, train: pd.DataFrame) -> BiasedMF:
        self.index = _Index.of(train)
        u, i = self.index.rows(train)
        r = train["rating"].to_numpy(np.float64)
        self.mu = float(r.mean())
        n_u, n_i = len(self.index.users), len(self.index.items)
        rng = np.random.default_rng(self.seed)
        # Column F of each factor matrix is the bias; the other side holds a constant 1 there.
        self.p = np.hstack([rng.normal(0, 0.1, (n_u, self.factors)), np.zeros((n_u, 1))])
        self.q = np.hstack([rng.normal(0, 0.1, (n_i, self.factors)), np.zeros((n_i, 1))])
        by_user = sp.csr_matrix((r - self.mu, (u, i)), shape=(n_u, n_i))
        by_item = by_user.T.tocsr()
        for _ in range(self.iterations):
            self.p = self._half_step(by_user, self.p, self.q)
            self.q = self._half_step(by_item, self.q, self.p)
        return self

    def _half_step(self, resid: sp.csr_matrix, mine: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Each row's [factors, bias] given the other side's: design x = [other factors, 1],
        target = residual - other bias, ridge reg·n_row on the factors, bias_reg on the bias."""
        f = self.factors
        out = mine.copy()
        design = _with_zero_row(np.hstack([other[:, :f], np.ones((other.shape[0], 1))]))
        other_bias = np.append(other[:, f], 0.0)
        ridge = np.zeros((f + 1, f + 1))
        ridge[f, f] = self.bias_reg
        for rows, cols, vals, n in _row_blocks(resid):
            x = design[cols]  # [B, L, F + 1]; padding rows are zero
            y = np.where(cols < len(other), vals - other_bias[cols], 0.0)
            lam = ridge + np.einsum("b,fg->bfg", self.reg * n, np.diag(np.r_[np.ones(f), 0.0]))
            gram = x.transpose(0, 2, 1) @ x + lam
            rhs = (y[:, None, :] @ x)[:, 0, :]
            out[rows] = np.linalg.solve(gram, rhs[..., None])[..., 0]
        return out

    def predict(self, pairs: pd.DataFrame) -> np.ndarray:
        u, i = self.index.rows(pairs)
        f = self.factors
        pu = np.where(u[:, None] >= 0, self.p[np.maximum(u, 0)], 0.0)
        qi = np.where(i[:, None] >= 0, self.q[np.maximum(i, 0)], 0.0)
        pred = self.mu + pu[:, f] + qi[:, f] + np.sum(pu[:, :f] * qi[:, :f], axis=1)
        return np.clip(pred, 1.0, 5.0)
