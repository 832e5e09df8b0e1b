"""User-value network: features -> a per-customer decaying purchase process -> three outputs.

Shapes: B = batch, F = len(VALUE_FEATURE_NAMES). Per customer the net predicts
    rate   r > 0   repeat transactions per week right after the cut-off
    decay  d > 0   per-week exponential decay of that rate (churn)
    shape  k > 0   negative-binomial dispersion of the count
    spend  m > 0   value per transaction
and, for a horizon of h weeks:
    expected_transactions  mu = r * (1 - exp(-d h)) / d
    p_active               1 - (1 + mu / k) ** -k          (P(count > 0) under NB(mu, k))
    expected_value         mu * m
Training fits windows of several lengths (training.value.protocol); the exported module fixes
h = horizon_weeks as a constant, so the ONNX graph takes only `features`. Input normalisation
(training mean / std) is a buffer inside the graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_DECAY = 1e-3
MIN_SHAPE = 1e-2


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
        self.process = nn.Linear(hidden, 4)  # rate, decay, shape, spend (pre-activation)
        self.age_column = age_column
        self.age_offset = nn.Parameter(torch.tensor(1.5))  # softplus -> ~1.7 weeks

    def parameters_of(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """features float[B, F] -> (rate, decay, shape, spend_per_transaction), each float[B]."""
        z = self.process(self.body((features - self.feature_mean) / self.feature_std))
        rate = F.softplus(z[:, 0]) * self.rate_scale
        decay = F.softplus(z[:, 1] - 1.0) + MIN_DECAY
        shape = F.softplus(z[:, 2]) + MIN_SHAPE
        spend = torch.exp(z[:, 3].clamp(-8.0, 8.0)) * self.spend_scale
        age = torch.expm1(features[:, self.age_column]).clamp_min(0.0) + F.softplus(self.age_offset)
        return rate, decay, shape, spend, age

    @staticmethod
    def outcomes(
        rate: torch.Tensor,
        decay: torch.Tensor,
        shape: torch.Tensor,
        age: torch.Tensor,
        horizon: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(expected transactions, P(any)) over `horizon` weeks (scalar or float[B]).

        The rate ages as a power law, rate(tau) = rate * (age / (age + tau)) ** decay, so young
        customers slow down fast and old ones hardly at all; integrated over the horizon:
        mu = rate * age * (1 - u ** (decay - 1)) / (decay - 1) with u = age / (age + h)."""
        log_u = torch.log(age / (age + horizon))
        km1 = decay - 1.0
        near_one = km1.abs() < 1e-4
        safe = torch.where(near_one, torch.ones_like(km1), km1)
        integral = torch.where(near_one, -log_u, -torch.expm1(km1 * log_u) / safe)
        mu = rate * age * integral
        p_active = 1.0 - torch.exp(-shape * torch.log(1.0 + mu / shape))
        return mu, p_active

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features float[B, F] -> p_active, expected_transactions, expected_value: float[B]."""
        rate, decay, shape, spend, age = self.parameters_of(features)
        mu, p_active = self.outcomes(rate, decay, shape, age, self.horizon_weeks)
        return p_active, mu, mu * spend


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
        rate, decay, shape, per_txn, age = net.parameters_of(features)
        mu, p_active = net.outcomes(rate, decay, shape, age, horizon)
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
