"""Dedicated explicit-feedback rating models (what the bundle serves as `rating`).

    SVDpp     mu + biases + side-feature biases + (p_u + |N(u)|^-1/2 sum_j y_j + profile) .
              (q_i + tags + item attributes): biased MF with SVD++ implicit feedback from the user's
              served history (the last H items) and the user/item side features.
    AutoRecScorer  item-based AutoRec (Sedhain et al. 2015) in its served form: each item's
              code h_i = sigmoid(V r_i + c) is computed once from the training ratings, so the
              prediction W_u . h_i + b_u is a factor model over (user, item).
    RatingBlend    clip(w0 + w1 svdpp + w2 autorec, 1, 5); unknown users (row 0) get SVD++
              alone, which still personalises from the history and the profile.

Every module maps (user_index [B], profile [B, P], history [B, H], items [B, N]) -> float[B, N].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from training.models.layers import known_rows

MIN_RATING, MAX_RATING = 1.0, 5.0  # the default scale; a dataset declares its own


class SVDpp(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        profile_cardinalities: Sequence[int],
        item_tags: np.ndarray,
        item_attrs: np.ndarray,
        item_cardinalities: Sequence[int],
        factors: int,
        global_mean: float,
    ) -> None:
        super().__init__()
        self.register_buffer("item_tags", torch.as_tensor(item_tags, dtype=torch.float32))
        self.register_buffer(
            "item_attrs", torch.as_tensor(item_attrs, dtype=torch.int64).reshape(n_items, -1)
        )
        self.mu = nn.Parameter(torch.tensor([global_mean], dtype=torch.float32))
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        self.implicit = nn.Embedding(n_items, factors)  # y_j
        self.profile = nn.ModuleList(nn.Embedding(c, factors + 1) for c in profile_cardinalities)
        # A dataset without tags still gets a (zero-width) tag layer: its output is all zeros.
        self.tag = nn.Linear(item_tags.shape[1], factors + 1, bias=False)
        self.attrs = nn.ModuleList(nn.Embedding(c, factors + 1) for c in item_cardinalities)
        for table in (self.user, self.item, self.implicit, *self.profile, *self.attrs):
            nn.init.normal_(table.weight, std=0.01)
        nn.init.normal_(self.tag.weight, std=0.01)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)
        with torch.no_grad():
            for table in (self.user, self.item, self.implicit):
                table.weight[0] = 0.0  # row 0: unknown user / item, history padding

    def user_vectors(
        self, user_index: torch.Tensor, profile: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """-> float[B, F + 1]: factors, then the user's bias (last column)."""
        mask = (history > 0).to(torch.float32).unsqueeze(-1)  # [B, H, 1]
        count = mask.sum(1).clamp(min=1.0)
        implicit = (self.implicit(history) * mask).sum(1) / count.sqrt()
        vec = torch.cat([self.user(user_index) + implicit, self.user_bias(user_index)], dim=-1)
        for f, table in enumerate(self.profile):
            vec = vec + table(profile[:, f])
        return vec

    def item_vectors(
        self,
        items: torch.Tensor,
        tags: torch.Tensor | None = None,
        attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> float[..., F + 1]: factors, then the item's bias (last column). tags float[..., T]
        / attrs int64[..., A]: the items' side features (None: looked up in the training
        tables); rows past the trained tables read row 0 (unknown) of the item factors."""
        if tags is None or attrs is None:
            tags, attrs = self.item_tags[items], self.item_attrs[items]
        known = known_rows(items, self.item.num_embeddings)
        own = torch.cat([self.item(known), self.item_bias(known)], dim=-1)
        for a, table in enumerate(self.attrs):
            own = own + table(attrs[..., a])
        if tags.shape[-1] == 0:  # a dataset without tags: the tag part is zeros
            return own
        return own + self.tag(tags) / tags.sum(-1, keepdim=True).clamp(min=1.0)

    @staticmethod
    def combine(mu: torch.Tensor, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """user [..., F + 1] and item [..., F + 1] (broadcast) -> mu + b_u + b_i + p . q."""
        dot = (user[..., :-1] * item[..., :-1]).sum(-1)
        return mu + user[..., -1] + item[..., -1] + dot

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        user = self.user_vectors(user_index, profile, history).unsqueeze(1)  # [B, 1, F+1]
        return self.combine(self.mu, user, self.item_vectors(items, item_tags, item_attrs))


class DotParts(NamedTuple):
    """A rating model that is a dot product of a user row and an item row plus per-user and
    per-item constants: out[u, i] = user_const[u] + item_const[i] + user[u] . item[i]
    (item_const None: none). Tables of the trained rows (row 0: the unknown user / item)."""

    user: torch.Tensor  # float[U, K]
    user_const: torch.Tensor  # float[U]
    item: torch.Tensor  # float[I, K]
    item_const: torch.Tensor | None  # float[I]


class FactorScorer(nn.Module):
    """A fixed factor model: mu + b_u + c_i + U_u . V_i (the BPMF posterior mean)."""

    def __init__(
        self,
        mu: float,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_bias: np.ndarray,
        item_bias: np.ndarray,
    ) -> None:
        super().__init__()
        self.register_buffer("mu", torch.tensor([mu], dtype=torch.float32))
        self.register_buffer("user_factors", torch.as_tensor(user_factors, dtype=torch.float32))
        self.register_buffer("item_factors", torch.as_tensor(item_factors, dtype=torch.float32))
        self.register_buffer("user_bias", torch.as_tensor(user_bias, dtype=torch.float32))
        self.register_buffer("item_bias", torch.as_tensor(item_bias, dtype=torch.float32))

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """item_tags / item_attrs: unused (a pure factor model)."""
        user = self.user_factors[user_index].unsqueeze(1)  # [B, 1, K]
        dot = (user * self.item_factors[items]).sum(-1)  # [B, N]
        return self.mu + self.user_bias[user_index].unsqueeze(1) + self.item_bias[items] + dot

    def dot_parts(self) -> DotParts:
        return DotParts(
            self.user_factors, self.mu + self.user_bias, self.item_factors, self.item_bias
        )


class AutoRecNet(nn.Module):
    """I-AutoRec for training: item rating vectors float[I, U] -> reconstructions float[I, U]."""

    def __init__(self, n_users: int, hidden: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(n_users, hidden)
        self.decoder = nn.Linear(hidden, n_users)

    def codes(self, ratings: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(ratings))

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.codes(ratings))


class AutoRecScorer(nn.Module):
    """The served form of a trained AutoRecNet: W_u . h_i + b_u."""

    def __init__(self, net: AutoRecNet, item_ratings: torch.Tensor) -> None:
        super().__init__()
        with torch.no_grad():
            self.register_buffer("codes", net.codes(item_ratings).detach().clone())  # [I, K]
            self.register_buffer("weight", net.decoder.weight.detach().clone())  # [U, K]
            self.register_buffer("bias", net.decoder.bias.detach().clone())  # [U]

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """item_tags / item_attrs: unused (codes from the training ratings)."""
        user = self.weight[user_index].unsqueeze(1)  # [B, 1, K]
        return (user * self.codes[items]).sum(-1) + self.bias[user_index].unsqueeze(1)

    def dot_parts(self) -> DotParts:
        return DotParts(self.weight, self.bias, self.codes, None)


def rating_and_liked(
    raw: torch.Tensor, low: float, high: float, positive: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A blend's raw rating -> (rating clipped to [low, high], P(liked) = sigmoid(positive[0]
    * rating + positive[1]))."""
    rating = raw.clamp(low, high)
    return rating, torch.sigmoid(positive[0] * rating + positive[1])


class RatingBlend(nn.Module):
    """clip(w0 + sum_k w_k model_k, low, high) on the dataset's rating scale (default 1..5);
    unknown users (index 0) get the first model alone. With `positive` (a, b): also
    P(rating >= the scale's "like" threshold) = sigmoid(a * rating + b)."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float],
        positive: tuple[float, float] = (1.0, -3.5),
        scale: tuple[float, float] = (MIN_RATING, MAX_RATING),
    ) -> None:
        super().__init__()
        self.low, self.high = float(scale[0]), float(scale[1])
        self.models = nn.ModuleList(models)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))
        self.register_buffer("positive", torch.tensor(list(positive), dtype=torch.float32))

    def raw(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = () if item_tags is None or item_attrs is None else (item_tags, item_attrs)
        outs = [m(user_index, profile, history, items, *extra) for m in self.models]
        blend = self.weights[0] + sum(w * o for w, o in zip(self.weights[1:], outs, strict=True))
        known = (user_index > 0).unsqueeze(1)
        return torch.where(known, blend, outs[0])

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (rating float[B, N] in [low, high], P(liked) float[B, N]); item_tags /
        item_attrs: the candidates' side features (None: the training tables)."""
        raw = self.raw(user_index, profile, history, items, item_tags, item_attrs)
        return rating_and_liked(raw, self.low, self.high, self.positive)


class FoldedRating(nn.Module):
    """A RatingBlend whose models are all dot products (DotParts: FactorScorer, AutoRecScorer;
    not SVD++, whose user row depends on the history) folded into one user table and one item
    table: raw[u, i] = users[u] . items[i]. Same outputs as the blend up to float rounding
    (`fold_rating` checks it), so rater.onnx gathers one row per candidate and runs one
    matrix-vector product instead of a gather, a product and a sum per model.

    Item row i: [item_1[i], ..., item_M[i], the item constants, 1]. User row u (known, u > 0):
    [w_1 user_1[u], ..., w_M user_M[u], the w_k of each item constant, w_0 + sum_k w_k
    user_const_k[u]]. Row 0 (the unknown user, who gets the first model alone): [user_1[0],
    0, ..., 1 for the first model's item constant, 0, ..., user_const_1[0]].

    materialize (None: when it is no larger than the two tables, U x I <= (U + I) x width, as
    for MovieLens-100K): the product users @ items.T itself, float[U x I] computed in float64,
    so a candidate's raw rating is one gathered value (`matrix[u * I + i]`)."""

    def __init__(self, blend: RatingBlend, materialize: bool | None = None) -> None:
        super().__init__()
        parts = [m.dot_parts() for m in blend.models]
        w = blend.weights.to(torch.float64)
        n_users = {p.user.shape[0] for p in parts} | {p.user_const.shape[0] for p in parts}
        n_items = {p.item.shape[0] for p in parts}
        n_items |= {p.item_const.shape[0] for p in parts if p.item_const is not None}
        if len(n_users) != 1 or len(n_items) != 1:
            raise ValueError(f"the blend's tables differ in rows: {n_users} users, {n_items} items")
        f64 = [
            DotParts(*(None if t is None else t.detach().to(torch.float64) for t in p))
            for p in parts
        ]
        with_const = [k for k, p in enumerate(f64) if p.item_const is not None]
        (rows,) = n_users
        users = [w[k + 1] * p.user for k, p in enumerate(f64)]
        users += [w[k + 1].expand(rows, 1) for k in with_const]
        users.append((w[0] + sum(w[k + 1] * p.user_const for k, p in enumerate(f64)))[:, None])
        users = torch.cat([u.reshape(rows, -1) for u in users], dim=1)
        first = f64[0]
        unknown = [first.user[0]] + [torch.zeros_like(p.user[0]) for p in f64[1:]]
        unknown += [torch.full((1,), float(k == 0), dtype=torch.float64) for k in with_const]
        unknown.append(first.user_const[:1])
        users[0] = torch.cat([t.reshape(-1) for t in unknown])
        items = [p.item for p in f64] + [f64[k].item_const[:, None] for k in with_const]
        items.append(torch.ones(first.item.shape[0], 1, dtype=torch.float64))
        items = torch.cat(items, dim=1)
        self.n_users, (self.n_items, width) = rows, items.shape
        if materialize is None:
            materialize = rows * self.n_items <= (rows + self.n_items) * width
        self.materialized = bool(materialize)
        if self.materialized:
            self.register_buffer("matrix", (users @ items.T).reshape(-1).to(torch.float32))
        else:
            self.register_buffer("users", users.to(torch.float32))
            self.register_buffer("items", items.to(torch.float32))
        self.low, self.high = blend.low, blend.high
        self.register_buffer("positive", blend.positive.clone())

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RatingBlend.forward's signature and outputs; reads user_index and items only."""
        return rating_and_liked(self.raw(user_index, items), self.low, self.high, self.positive)

    def raw(self, user_index: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user_index int64[B], items int64[B, N] (trained rows) -> the blend's raw rating
        float[B, N], before clipping."""
        if self.materialized:
            return self.matrix[user_index.unsqueeze(1) * self.n_items + items]
        user = self.users[user_index].unsqueeze(-1)  # [B, K, 1]
        return torch.matmul(self.items[items], user).squeeze(-1)


FOLD_TOLERANCE = 1e-4


def fold_rating(blend: RatingBlend, materialize: bool | None = None, seed: int = 0) -> nn.Module:
    """The blend as rater.onnx computes it: FoldedRating (`materialize`: see there) when every
    model is a dot product (has dot_parts), checked against the blend on every user row
    0..min(U, 256) and a random sample of items (ValueError above FOLD_TOLERANCE); otherwise
    the blend itself."""
    if not all(hasattr(m, "dot_parts") for m in blend.models):
        return blend
    folded = FoldedRating(blend, materialize)
    n_users, n_items = folded.n_users, folded.n_items
    gen = torch.Generator().manual_seed(seed)
    users = torch.arange(min(n_users, 256))
    items = torch.randint(0, n_items, (len(users), 32), generator=gen)
    items[:, 0] = 0
    empty = torch.zeros(len(users), 0, dtype=torch.int64)
    with torch.no_grad():
        want = blend.raw(users, empty, empty, items)
        got = folded.raw(users, items)
    error = float((got - want).abs().max())
    if not error <= FOLD_TOLERANCE:
        raise ValueError(f"folded rating model differs from the blend by {error:.3g}")
    return folded


def interact_probability(ranker: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
    """P(interact) float[B, N] of `ranker` on ServedRanker's inputs (in order): a
    training.models.Ranker computes its interact head alone (`interact_logit`); any other
    ranker gives it as its third output."""
    interact_logit = getattr(ranker, "interact_logit", None)
    if interact_logit is not None:
        return torch.sigmoid(interact_logit(*args))
    return ranker(*args)[2]


def rated(
    ranker: nn.Module,
    rating: nn.Module,
    user_index: torch.Tensor,
    profile: torch.Tensor,
    history: torch.Tensor,
    items: torch.Tensor,
    item_tags: torch.Tensor | None,
    item_attrs: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_positive, rating) float[B, N] of the rating model; rows past the ranker's n_items
    (items added after training) read as the unknown item, in the history and the candidates."""
    n_items = ranker.item_features.n_items
    out_rating, p_positive = rating(
        user_index, profile, known_rows(history, n_items), known_rows(items, n_items),
        item_tags, item_attrs,
    )  # fmt: skip
    return p_positive, out_rating


class ServedRanker(nn.Module):
    """The served ranking model: the ranker's P(interact) (the serving order) beside the
    dedicated rating model's rating and its P(liked). Exported as two graphs (`graphs`):
    ranker.onnx (p_interact) and rater.onnx (p_positive, rating). Same inputs and output names
    as Ranker: (user_index, profile, history, items, history_tags, history_attrs, item_tags,
    item_attrs, item_vectors) -> (p_positive, rating, p_interact), float[B, N].

    The rating model reads the candidates' side features from the same inputs (SVD++'s tag and
    attribute terms); its trained item tables (factors, biases, AutoRec codes) read rows >= the
    ranker's n_items (items added after training) as row 0, the unknown item, and such rows in
    the history count as padding there.

    A dataset without ratings has no rating model (rating=None): then a positive is an
    interaction (p_positive = p_interact) and rating is 0, which the manifest marks
    (rating_model null) and the gateway never shows as a rating."""

    def __init__(self, ranker: nn.Module, rating: nn.Module | None) -> None:
        """rating: a RatingBlend (or its FoldedRating), None without a rating model."""
        super().__init__()
        self.ranker = ranker
        self.rating = rating

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """history_age / history_kind: for the ranker's retrieval score, when its user tower
        reads them (training only: the exported graphs take the tower's output instead)."""
        p_interact = interact_probability(
            self.ranker, user_index, profile, history, items, history_tags, history_attrs,
            item_tags, item_attrs, item_vectors, history_age, history_kind,
        )  # fmt: skip
        if self.rating is None:
            return p_interact, torch.zeros_like(p_interact), p_interact
        p_positive, rating = rated(
            self.ranker, self.rating, user_index, profile, history, items, item_tags, item_attrs
        )
        return p_positive, rating, p_interact

    def graphs(self) -> dict[str, nn.Module]:
        """The bundle's ranking graphs: with a rating model, ranker.onnx = InteractGraph
        (p_interact only, for every candidate) and rater.onnx = RatingGraph (p_positive and
        rating, for the candidates that show a rating: serving rates only the top k); without
        one, ranker.onnx = this module (p_positive = p_interact, rating 0), as before.

        A rating model folded into its materialized rating matrix (fold_rating) costs one
        gathered value per candidate, less than a second graph call for k of them: then it
        stays in ranker.onnx, one graph with every output for every candidate."""
        if self.rating is None:
            return {"ranker.onnx": self}
        rating = fold_rating(self.rating)
        if getattr(rating, "materialized", False):
            return {"ranker.onnx": ServedRanker(self.ranker, rating)}
        return {
            "ranker.onnx": InteractGraph(self.ranker),
            "rater.onnx": RatingGraph(self.ranker, rating),
        }


class InteractGraph(nn.Module):
    """ranker.onnx of a bundle with rater.onnx: ServedRanker's inputs -> p_interact float[B, N]
    only (the serving order, computed for every candidate). A Ranker computes it with
    `Ranker.interact_logit`: the interact head alone (no likes or rating head) and the MLP's
    first layer split, so the user part goes through it once per user (`Ranker.hidden`)."""

    OUTPUTS = ("p_interact",)

    def __init__(self, ranker: nn.Module) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return interact_probability(
            self.ranker, user_index, profile, history, items,
            history_tags, history_attrs, item_tags, item_attrs, item_vectors,
        )  # fmt: skip


class RatingGraph(nn.Module):
    """rater.onnx: ServedRanker's inputs -> (p_positive, rating) float[B, N] of the dedicated
    rating model, for the candidates given (serving passes the top k by p_interact). It reads
    user_index, profile, history, items and the candidates' item_tags / item_attrs (the graph
    declares only those it reads). `ranker` is held for its n_items (rows past it read as the
    unknown item) and its training feature tables (training.export.with_item_features);
    nothing of it is in the graph."""

    OUTPUTS = ("p_positive", "rating")

    def __init__(self, ranker: nn.Module, rating: nn.Module) -> None:
        """rating: a RatingBlend, or its FoldedRating (fold_rating)."""
        super().__init__()
        self.ranker = ranker
        self.rating = rating

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return rated(
            self.ranker, self.rating, user_index, profile, history, items, item_tags, item_attrs
        )
