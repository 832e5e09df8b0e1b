"""Classical customer-lifetime-value models, implemented on scipy (evaluation and features only).

    BG/NBD       Fader, Hardie & Lee (2005), "Counting your customers the easy way"
    Pareto/NBD   Schmittlein, Morrison & Colombo (1987); likelihood as in Fader & Hardie (2005),
                 "A note on deriving the Pareto/NBD model and related expressions"
    Gamma-Gamma  Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves"

Inputs per customer (time in weeks): x = repeat transactions, t_x = recency (first to last),
T = age (first transaction to the cut-off), m = mean value of the repeat transactions.
Parameters are fitted by maximum likelihood on log-parameters (L-BFGS-B); the `lifetimes`
library, the usual reference, does not run on numpy 2 / pandas 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from training.value.protocol import DAYS_PER_WEEK, CustomerDays

_GAUSS_NODES = 40


@dataclass(frozen=True)
class Rfm:
    """Sufficient statistics, float64[U] each."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m: np.ndarray

    @classmethod
    def of(cls, x, t_x, T, m=None) -> Rfm:
        x = np.asarray(x, np.float64)
        m = np.zeros_like(x) if m is None else np.asarray(m, np.float64)
        return cls(x, np.asarray(t_x, np.float64), np.asarray(T, np.float64), m)


def rfm_at(data: CustomerDays, day: int) -> tuple[np.ndarray, Rfm]:
    """(owners with an active day <= day, their Rfm as of `day`), the definitions of
    services.contract.value_features (T counts from the first active day to `day`)."""
    keep = data.days <= day
    owner, days, values = data.owner[keep], data.days[keep], data.values[keep].astype(np.float64)
    n = np.bincount(owner, minlength=data.n_users)
    owners = np.flatnonzero(n > 0)
    is_first = np.r_[True, owner[1:] != owner[:-1]]
    first = np.zeros(data.n_users)
    last = np.zeros(data.n_users)
    first[owner[is_first]] = days[is_first]
    last[owner[np.r_[owner[1:] != owner[:-1], True]]] = days[np.r_[owner[1:] != owner[:-1], True]]
    repeat_value = np.bincount(owner[~is_first], values[~is_first], minlength=data.n_users)
    x = (n - 1.0)[owners]
    m = np.divide(repeat_value[owners], x, out=np.zeros_like(x), where=x > 0)
    t_x = (last - first)[owners] / DAYS_PER_WEEK
    return owners, Rfm.of(x, t_x, (day - first[owners]) / DAYS_PER_WEEK, m)


def _fit(neg_ll, start: np.ndarray) -> np.ndarray:
    res = optimize.minimize(
        lambda p: neg_ll(np.exp(p)),
        np.log(start),
        method="L-BFGS-B",
        bounds=[(-12, 12)] * len(start),
    )
    return np.exp(res.x)


def _logdiffexp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(exp(a) - exp(b)) for a >= b."""
    with np.errstate(divide="ignore"):
        return a + np.log1p(-np.exp(np.minimum(b - a, 0.0)))


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def log_likelihood(self, d: Rfm) -> np.ndarray:
        """float64[U], FHL (2005) eq. (6)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, T = d.x, d.t_x, d.T
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = (
            special.gammaln(a + b)
            + special.gammaln(b + x)
            - special.gammaln(b)
            - special.gammaln(a + b + x)
        )
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x)
        return a1 + a2 + np.where(x > 0, np.logaddexp(a3, a4), a3)

    @classmethod
    def fit(cls, d: Rfm) -> BgNbd:
        def neg(p):
            ll = cls(*p).log_likelihood(d)
            return -ll.mean() if np.isfinite(ll).all() else 1e18

        return cls(*(float(v) for v in _fit(neg, np.array([0.5, 5.0, 0.8, 2.5]))))

    def p_alive(self, d: Rfm) -> np.ndarray:
        odds = self.a / np.maximum(self.b + d.x - 1, 1e-12)
        odds = odds * ((self.alpha + d.T) / (self.alpha + d.t_x)) ** (self.r + d.x)
        return np.where(d.x > 0, 1.0 / (1.0 + odds), 1.0)

    def expected(self, d: Rfm, t: float) -> np.ndarray:
        """E[transactions in (T, T + t] | x, t_x, T], FHL (2005) eq. (10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, T = d.x, d.T
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        body = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        return (a + b + x - 1) / (a - 1) * body * self.p_alive(d)

    def p_any(self, d: Rfm, t: float) -> np.ndarray:
        """P(at least one transaction in (T, T + t]): a customer alive at T cannot drop out
        before the next purchase, so P(none | alive) = E[exp(-lambda t)]."""
        none_if_alive = ((self.alpha + d.T) / (self.alpha + d.T + t)) ** (self.r + d.x)
        return self.p_alive(d) * (1.0 - none_if_alive)

    def unconditional(self, t: np.ndarray) -> np.ndarray:
        """E[X(t)] for a customer t weeks after the first purchase, FHL (2005) eq. (7)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t = np.maximum(np.asarray(t, np.float64), 0.0)
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp)


@dataclass(frozen=True)
class ParetoNbd:
    r: float
    alpha: float
    s: float
    beta: float

    def _log_a0(self, d: Rfm) -> np.ndarray:
        """log A0 of Fader & Hardie (2005) eq. (20)-(21), on the larger of alpha and beta."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        x, t_x, T = d.x, d.t_x, d.T
        rsx = r + s + x
        if alpha >= beta:
            big, second = alpha, s + 1.0
        else:
            big, second = beta, r + x
        gap = abs(alpha - beta)

        def term(t):
            return np.log(special.hyp2f1(rsx, second, rsx + 1, gap / (big + t))) - rsx * np.log(
                big + t
            )

        return _logdiffexp(term(t_x), term(T))

    def log_likelihood(self, d: Rfm) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        x, T = d.x, d.T
        head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        first = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        second = np.log(s / (r + s + x)) + self._log_a0(d)
        with np.errstate(invalid="ignore"):
            return head + np.logaddexp(first, np.where(d.t_x < d.T, second, -np.inf))

    @classmethod
    def fit(cls, d: Rfm) -> ParetoNbd:
        def neg(p):
            with np.errstate(all="ignore"):
                ll = cls(*p).log_likelihood(d)
            return -ll.mean() if np.isfinite(ll).all() else 1e18

        return cls(*(float(v) for v in _fit(neg, np.array([0.5, 10.0, 0.5, 10.0]))))

    def p_alive(self, d: Rfm) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        log_odds = (
            np.log(s / (r + s + d.x))
            + (r + d.x) * np.log(alpha + d.T)
            + s * np.log(beta + d.T)
            + self._log_a0(d)
        )
        with np.errstate(over="ignore", invalid="ignore"):
            out = 1.0 / (1.0 + np.exp(log_odds))
        return np.where(d.t_x < d.T, out, 1.0)

    def expected(self, d: Rfm, t: float) -> np.ndarray:
        """E[transactions in (T, T + t] | x, t_x, T] (Schmittlein et al. 1987, eq. 22)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        rate = (r + d.x) * (beta + d.T) / ((alpha + d.T) * (s - 1.0))
        return rate * (1.0 - ((beta + d.T) / (beta + d.T + t)) ** (s - 1.0)) * self.p_alive(d)

    def p_any(self, d: Rfm, t: float) -> np.ndarray:
        """P(at least one transaction in (T, T + t]). Alive at T, the posterior is
        lambda ~ Gamma(r + x, alpha + T), mu ~ Gamma(s, beta + T); with no purchase while alive
        P(none | lambda, mu) = (mu + lambda e^{-(lambda + mu) t}) / (lambda + mu). The double
        expectation uses generalised Gauss-Laguerre quadrature."""
        mu_nodes, mu_w = special.roots_genlaguerre(_GAUSS_NODES, self.s - 1.0)
        mu_w = mu_w / mu_w.sum()
        out = np.empty_like(d.x)
        for x in np.unique(d.x):
            rows = d.x == x
            lam_nodes, lam_w = special.roots_genlaguerre(_GAUSS_NODES, self.r + x - 1.0)
            lam_w = lam_w / lam_w.sum()
            lam = lam_nodes[None, :, None] / (self.alpha + d.T[rows, None, None])
            mu = mu_nodes[None, None, :] / (self.beta + d.T[rows, None, None])
            none = (mu + lam * np.exp(-(lam + mu) * t)) / (lam + mu)
            out[rows] = np.einsum("ujk,j,k->u", none, lam_w, mu_w)
        return self.p_alive(d) * (1.0 - out)

    def unconditional(self, t: np.ndarray) -> np.ndarray:
        """E[X(t)] for a new customer (Schmittlein et al. 1987, eq. 17)."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        t = np.maximum(np.asarray(t, np.float64), 0.0)
        return r * beta / (alpha * (s - 1.0)) * (1.0 - (beta / (beta + t)) ** (s - 1.0))


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    def log_likelihood(self, d: Rfm) -> np.ndarray:
        """Over repeat buyers (x > 0) with mean repeat value m > 0: FHL (2005) eq. (4)."""
        p, q, g = self.p, self.q, self.gamma
        x, m = d.x, d.m
        return (
            special.gammaln(p * x + q)
            - special.gammaln(p * x)
            - special.gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(g + m * x)
        )

    @classmethod
    def fit(cls, d: Rfm) -> GammaGamma:
        keep = (d.x > 0) & (d.m > 0)
        sub = Rfm(d.x[keep], d.t_x[keep], d.T[keep], d.m[keep])

        def neg(p):
            ll = cls(*p).log_likelihood(sub)
            return -ll.mean() if np.isfinite(ll).all() else 1e18

        return cls(*(float(v) for v in _fit(neg, np.array([2.0, 3.0, 10.0]))))

    def expected_value(self, d: Rfm) -> np.ndarray:
        """E[value per transaction | x, m]: a weighted mean of the population mean
        p gamma / (q - 1) and the customer's own mean m (the population mean when x = 0)."""
        p, q, g = self.p, self.q, self.gamma
        return p * (g + d.x * d.m) / (p * d.x + q - 1.0)
