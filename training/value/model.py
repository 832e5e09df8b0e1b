"""User-value network: features -> a per-customer decaying purchase process -> three outputs.

Shapes: B = batch, F = len(VALUE_FEATURE_NAMES). Per customer the net predicts
    rate   r > 0   repeat transactions per week right after the cut-off
    decay  d > 0   how fast that rate ages (churn)
    shape  k > 0   negative-binomial dispersion of the count
    spend  m > 0   value per transaction
    floor  f       (optional head) the share of the rate that never ages
and, for a horizon of h weeks, mu = the integral of the rate over the horizon, with
    power (default)  rate(tau) = r * (f + (1 - f) * (age / (age + tau)) ** d), f = 0 without floor
    exponential      rate(tau) = r * exp(-d tau)
    expected_transactions  mu
    p_active               1 - (1 + mu / k) ** -k          (P(count > 0) under NB(mu, k))
    expected_value         mu * m
Training fits windows of several lengths (training.value.protocol); the exported module fixes
h = horizon_weeks as a constant, so the ONNX graph takes only `features`. Input normalisation
(training mean / std) is a buffer inside the graph. ValueEnsemble averages several nets' outputs
in one graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

MIN_DECAY = 1e-3
MIN_SHAPE = 1e-2


class Process(NamedTuple):
    """Per-customer purchase process, float[B] each (floor is 0 without the floor head)."""

    rate: torch.Tensor
    decay: torch.Tensor
    shape: torch.Tensor
    spend: torch.Tensor
    age: torch.Tensor
    floor: torch.Tensor


def process_from(
    z: torch.Tensor,
    log_age: torch.Tensor,
    rate_scale: torch.Tensor,
    spend_scale: torch.Tensor,
    age_shift: torch.Tensor,
    has_floor: bool,
) -> Process:
    """The value head's pre-activations z float[..., B, P] -> the Process, each float[..., B]
    (one net: [B]; StackedEnsemble: [M, B], its scales [M, 1]). log_age: the age feature
    float[B] (log1p of weeks); age_shift: softplus of the net's age offset."""
    rate = F.softplus(z[..., 0]) * rate_scale
    decay = F.softplus(z[..., 1] - 1.0) + MIN_DECAY
    shape = F.softplus(z[..., 2]) + MIN_SHAPE
    spend = torch.exp(z[..., 3].clamp(-8.0, 8.0)) * spend_scale
    age = torch.expm1(log_age).clamp_min(0.0) + age_shift
    floor = torch.sigmoid(z[..., 4] - 2.0) if has_floor else torch.zeros_like(rate)
    return Process(rate, decay, shape, spend, age, floor)


class ValueNet(nn.Module):
    def __init__(
        self,
        feature_mean: torch.Tensor,
        feature_std: torch.Tensor,
        *,
        rate_scale: float,
        spend_scale: float,
        horizon_weeks: float,
        age_column: int,
        hidden: int = 64,
        dropout: float = 0.1,
        floor: bool = False,
        exponential: bool = False,
    ) -> None:
        super().__init__()
        n_features = feature_mean.numel()
        self.register_buffer("feature_mean", feature_mean.float().clone())
        self.register_buffer("feature_std", feature_std.float().clamp_min(1e-6).clone())
        self.register_buffer("rate_scale", torch.tensor(float(rate_scale)))
        self.register_buffer("spend_scale", torch.tensor(float(spend_scale)))
        self.register_buffer("horizon_weeks", torch.tensor(float(horizon_weeks)))
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
        )
        # rate, decay, shape, spend (pre-activation); with `floor` also the share of the rate
        # that does not age
        self.has_floor = floor
        self.exponential = exponential
        self.process = nn.Linear(hidden, 5 if floor else 4)
        self.age_column = age_column
        self.age_offset = nn.Parameter(torch.tensor(1.5))  # softplus -> ~1.7 weeks

    def parameters_of(self, features: torch.Tensor) -> Process:
        """features float[B, F] -> the customer's Process."""
        z = self.process(self.body((features - self.feature_mean) / self.feature_std))
        return process_from(
            z,
            features[:, self.age_column],
            self.rate_scale,
            self.spend_scale,
            F.softplus(self.age_offset),
            self.has_floor,
        )

    def outcomes(
        self, process: Process, horizon: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(expected transactions, P(any)) over `horizon` weeks (scalar or float[B]).

        The rate ages as a power law, rate(tau) = rate * (age / (age + tau)) ** decay, so young
        customers slow down fast and old ones hardly at all; integrated over the horizon:
        mu = rate * age * (1 - u ** (decay - 1)) / (decay - 1) with u = age / (age + h).
        With a floor share f, rate(tau) = rate * (f + (1 - f) * (age / (age + tau)) ** decay)."""
        rate, decay, shape, _, age, floor = process
        if self.exponential:
            return self._exponential(process, horizon)
        log_u = torch.log(age / (age + horizon))
        km1 = decay - 1.0
        # ONNX has no Expm1 (it becomes Exp - 1): a series where x = (k - 1) log u is small
        x = km1 * log_u
        small = x.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(km1), km1)
        series = -log_u * (1.0 + x / 2.0 + x * x / 6.0)
        integral = torch.where(small, series, -torch.expm1(x) / safe)
        mu = rate * (floor * horizon + (1.0 - floor) * age * integral)
        p_active = 1.0 - torch.exp(-shape * torch.log(1.0 + mu / shape))
        return mu, p_active

    @staticmethod
    def _exponential(process: Process, horizon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rate(tau) = rate * exp(-decay * tau): mu = rate * (1 - exp(-decay h)) / decay."""
        x = process.decay * horizon
        small = x < 1e-2
        safe = torch.where(small, torch.ones_like(x), x)
        fraction = torch.where(small, 1.0 - x / 2.0 + x * x / 6.0, -torch.expm1(-x) / safe)
        aged = process.rate * horizon * fraction
        mu = process.floor * process.rate * horizon + (1.0 - process.floor) * aged
        shape = process.shape
        return mu, 1.0 - torch.exp(-shape * torch.log(1.0 + mu / shape))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features float[B, F] -> p_active, expected_transactions, expected_value: float[B]."""
        process = self.parameters_of(features)
        mu, p_active = self.outcomes(process, self.horizon_weeks)
        return p_active, mu, mu * process.spend


class ValueLoss(nn.Module):
    """NB log-likelihood of the count + BCE of P(any) + count-weighted spend loss.

    The spend term sum_i (n_i m_i - s_i log m_i) / sum_i n_i is minimised by m = s / n for each
    group of alike customers, so predicted totals stay unbiased."""

    def __init__(self, bce_weight: float = 1.0, spend_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = bce_weight
        self.spend_weight = spend_weight

    def forward(
        self,
        net: ValueNet,
        features: torch.Tensor,
        horizon: torch.Tensor,
        count: torch.Tensor,
        spend: torch.Tensor,
    ) -> torch.Tensor:
        process = net.parameters_of(features)
        mu, p_active = net.outcomes(process, horizon)
        shape, per_txn = process.shape, process.spend
        log_nb = (
            torch.lgamma(count + shape)
            - torch.lgamma(shape)
            - torch.lgamma(count + 1.0)
            + shape * torch.log(shape / (shape + mu))
            + count * torch.log(mu / (shape + mu) + 1e-12)
        )
        any_purchase = (count > 0).float()
        bce = F.binary_cross_entropy(p_active.clamp(1e-6, 1 - 1e-6), any_purchase)
        m = per_txn / net.spend_scale
        s = spend / net.spend_scale
        spend_loss = (count * m - s * torch.log(m)).sum() / count.sum().clamp_min(1.0)
        return -log_nb.mean() + self.bce_weight * bce + self.spend_weight * spend_loss


class ValueEnsemble(nn.Module):
    """The mean of several ValueNets' outputs (a mixture: mean P(any), mean expectations)."""

    def __init__(self, members: list[ValueNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [member(features) for member in self.members]
        return tuple(torch.stack(o).mean(0) for o in zip(*outs, strict=True))  # type: ignore[return-value]

    def curve(self, features: torch.Tensor, weeks: list[float]) -> list[float]:
        """Expected cumulative transactions summed over customers after each of `weeks`."""
        totals = [0.0] * len(weeks)
        for member in self.members:
            process = member.parameters_of(features)
            for i, w in enumerate(weeks):
                totals[i] += float(member.outcomes(process, torch.tensor(float(w)))[0].sum())
        return [t / len(self.members) for t in totals]


class StackedEnsemble(nn.Module):
    """A ValueEnsemble's members computed together, for export: each member's weights stacked
    along a leading member axis [M, ...], so every step is one batched op for all members
    instead of one op per member. The same math (ValueNet.parameters_of, ValueNet.outcomes per
    member, then the mean over members), so user_value.onnx has about a third of the nodes for
    three members: ONNX Runtime's per-node cost dominates this small graph, at one user per call
    (a request whose score the cache lacks). export_value_model checks ONNX Runtime's outputs
    against the ensemble itself."""

    def __init__(self, ensemble: ValueEnsemble) -> None:
        super().__init__()
        members: list[ValueNet] = list(ensemble.members)  # type: ignore[arg-type]
        first = members[0]
        # The same for every member (stackable): not a submodule, its weights are stacked below.
        self.outcomes = first.outcomes
        self.age_column, self.has_floor = first.age_column, first.has_floor

        def stack(get) -> torch.Tensor:
            return torch.stack([get(m).detach().float() for m in members])

        self.register_buffer("mean", stack(lambda m: m.feature_mean).unsqueeze(1))  # [M, 1, F]
        self.register_buffer("std", stack(lambda m: m.feature_std).unsqueeze(1))
        self.register_buffer("w1", stack(lambda m: m.body[0].weight.t()))  # [M, F, H]
        self.register_buffer("b1", stack(lambda m: m.body[0].bias).unsqueeze(1))  # [M, 1, H]
        self.register_buffer("w2", stack(lambda m: m.body[3].weight.t()))
        self.register_buffer("b2", stack(lambda m: m.body[3].bias).unsqueeze(1))
        self.register_buffer("wp", stack(lambda m: m.process.weight.t()))  # [M, H, P]
        self.register_buffer("bp", stack(lambda m: m.process.bias).unsqueeze(1))
        self.register_buffer("rate_scale", stack(lambda m: m.rate_scale).reshape(-1, 1))
        self.register_buffer("spend_scale", stack(lambda m: m.spend_scale).reshape(-1, 1))
        self.register_buffer("horizon", stack(lambda m: m.horizon_weeks).reshape(-1, 1))
        self.register_buffer(
            "age_shift", stack(lambda m: F.softplus(m.age_offset)).reshape(-1, 1)
        )  # [M, 1]

    @staticmethod
    def stackable(ensemble: ValueEnsemble) -> bool:
        """Whether the members share what StackedEnsemble assumes: their flags, the age column,
        the body's layout and the shapes of their weights."""
        members = list(ensemble.members)
        first = members[0]

        def layout(m) -> tuple:
            return (
                m.has_floor,
                m.exponential,
                m.age_column,
                tuple(type(layer) for layer in m.body),
                tuple(p.shape for p in m.parameters()),
            )

        return len(members) > 1 and all(layout(m) == layout(first) for m in members)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features float[B, F] -> p_active, expected_transactions, expected_value: float[B],
        the means over members, as ValueEnsemble.forward."""
        x = (features.unsqueeze(0) - self.mean) / self.std  # [M, B, F]
        h = F.silu(torch.matmul(x, self.w1) + self.b1)
        h = F.silu(torch.matmul(h, self.w2) + self.b2)
        z = torch.matmul(h, self.wp) + self.bp  # [M, B, P]
        process = process_from(  # each [M, B]
            z,
            features[:, self.age_column],
            self.rate_scale,
            self.spend_scale,
            self.age_shift,
            self.has_floor,
        )
        mu, p_active = self.outcomes(process, self.horizon)
        return p_active.mean(0), mu.mean(0), (mu * process.spend).mean(0)
