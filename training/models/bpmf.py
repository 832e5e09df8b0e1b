"""Bayesian probabilistic matrix factorisation with biases (Salakhutdinov & Mnih 2008), Gibbs
sampling in numpy, vectorised over users / items.

    r_ui ~ N(mu + b_u + c_i + p_u . q_i, 1 / alpha)
    [p_u, b_u] ~ N(m_U, L_U^-1), [q_i, c_i] ~ N(m_I, L_I^-1), (m, L) ~ Normal-Wishart,
    alpha ~ Gamma.

The prediction is the posterior mean over the kept samples; since each sample is a factor
model, the mean is one too: user rows [p_u^1 .. p_u^S] / S and item rows [q_i^1 .. q_i^S],
exported as plain embedding tables (training.models.rating.FactorScorer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class BPMFConfig:
    factors: int = 10
    burn_in: int = 30
    samples: int = 60
    beta0: float = 2.0  # Normal-Wishart: strength of the prior on the hyper-mean
    alpha_shape: float = 1.0  # Gamma prior on the noise precision
    alpha_rate: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class BPMFResult:
    """Posterior-mean factor model: rating = mu + user_bias[u] + item_bias[i] + U[u] . V[i]."""

    mu: float
    user_factors: np.ndarray  # float32[U, S*K], already divided by S
    item_factors: np.ndarray  # float32[I, S*K]
    user_bias: np.ndarray  # float32[U]
    item_bias: np.ndarray  # float32[I]

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dot = np.einsum("rk,rk->r", self.user_factors[users], self.item_factors[items])
        return self.mu + self.user_bias[users] + self.item_bias[items] + dot


def _sample_hyper(
    x: np.ndarray, beta0: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Normal-Wishart posterior (prior mean 0, W0 = I, nu0 = D) given rows x [N, D]
    -> (mean [D], precision [D, D])."""
    n, d = x.shape
    xbar = x.mean(0)
    s = np.cov(x, rowvar=False, bias=True) * n
    beta_n, nu_n = beta0 + n, d + n
    mu_n = n * xbar / beta_n
    w_inv = np.eye(d) + s + (beta0 * n / beta_n) * np.outer(xbar, xbar)
    w = np.linalg.inv(w_inv)
    w = (w + w.T) / 2
    # Wishart(W, nu) by Bartlett's decomposition.
    chol = np.linalg.cholesky(w)
    a = np.zeros((d, d))
    a[np.tril_indices(d, -1)] = rng.standard_normal(d * (d - 1) // 2)
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(nu_n - np.arange(d)))
    la = chol @ a
    precision = la @ la.T
    mean_cov = np.linalg.inv(beta_n * precision)
    mean = rng.multivariate_normal(mu_n, (mean_cov + mean_cov.T) / 2)
    return mean, precision


def _sample_rows(
    design: np.ndarray,
    target: np.ndarray,
    rows: np.ndarray,
    n_rows: int,
    mean: np.ndarray,
    precision: np.ndarray,
    alpha: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gaussian conditional of every row at once. design [R, D] (the other side's vectors per
    rating), target [R], rows int64[R] (the row each rating belongs to) -> samples [N, D]."""
    d = design.shape[1]
    x, owner = torch.from_numpy(design), torch.as_tensor(rows.copy())
    outer = (x.unsqueeze(2) * x.unsqueeze(1)).reshape(len(x), d * d)
    sums = torch.zeros(n_rows, d * d, dtype=x.dtype).index_add_(0, owner, outer)
    lam = torch.from_numpy(precision)
    prec = alpha * sums.view(n_rows, d, d) + lam  # [N, D, D]
    weighted = x * torch.from_numpy(target)[:, None]
    xy = torch.zeros(n_rows, d, dtype=x.dtype).index_add_(0, owner, weighted)
    rhs = (alpha * xy + lam @ torch.from_numpy(mean)).unsqueeze(-1)  # [N, D, 1]
    chol = torch.linalg.cholesky(prec)
    upper = chol.transpose(1, 2)
    # mean = prec^-1 rhs = L^-T L^-1 rhs; sample = mean + L^-T z
    z = torch.from_numpy(rng.standard_normal((prec.shape[0], d, 1)))
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(upper, half + z, upper=True)[:, :, 0].numpy()


def fit_bpmf(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    cfg: BPMFConfig,
) -> BPMFResult:  # fmt: skip
    """Gibbs sampling; rows without ratings (e.g. row 0, unknown) end with zero factors/bias."""
    rng = np.random.default_rng(cfg.seed)
    k, n = cfg.factors, len(ratings)
    mu = float(ratings.mean())
    y = ratings.astype(np.float64) - mu
    # user rows [p_u, b_u]; item rows [q_i, c_i]
    user = rng.standard_normal((n_users, k + 1)) * 0.1
    item = rng.standard_normal((n_items, k + 1)) * 0.1
    has_u = np.bincount(users, minlength=n_users) > 0
    has_i = np.bincount(items, minlength=n_items) > 0
    alpha = 2.0
    acc_u, acc_i = [], []
    ones = np.ones((n, 1))
    for sweep in range(cfg.burn_in + cfg.samples):
        m_u, l_u = _sample_hyper(user[has_u], cfg.beta0, rng)
        design = np.hstack([item[items, :k], ones])  # [q_i, 1]
        user = _sample_rows(design, y - item[items, k], users, n_users, m_u, l_u, alpha, rng)
        m_i, l_i = _sample_hyper(item[has_i], cfg.beta0, rng)
        design = np.hstack([user[users, :k], ones])
        item = _sample_rows(design, y - user[users, k], items, n_items, m_i, l_i, alpha, rng)
        err = y - (user[users, :k] * item[items, :k]).sum(1) - user[users, k] - item[items, k]
        alpha = rng.gamma(cfg.alpha_shape + n / 2, 1.0 / (cfg.alpha_rate + (err**2).sum() / 2))
        if sweep >= cfg.burn_in:
            acc_u.append(np.where(has_u[:, None], user, 0.0))
            acc_i.append(np.where(has_i[:, None], item, 0.0))
    s = len(acc_u)
    u_all, i_all = np.stack(acc_u), np.stack(acc_i)  # [S, N, K+1]
    return BPMFResult(
        mu,
        (np.concatenate(list(u_all[:, :, :k]), axis=1) / s).astype(np.float32),
        np.concatenate(list(i_all[:, :, :k]), axis=1).astype(np.float32),
        u_all[:, :, k].mean(0).astype(np.float32),
        i_all[:, :, k].mean(0).astype(np.float32),
    )
