"""training.value.classical: BG/NBD, Pareto/NBD and Gamma-Gamma against hand-computed values,
numerical integration, simulation, and the published CDNOW estimates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from training.value.classical import BgNbd, GammaGamma, ParetoNbd, Rfm, rfm_at

CDNOW_DIR = Path(__file__).resolve().parents[2] / "data" / "cdnow"
BG = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)  # FHL (2005), CDNOW sample
PN = ParetoNbd(r=0.553, alpha=10.578, s=0.606, beta=11.669)  # Fader & Hardie, CDNOW sample


def integrate_2d(f, u_max: float, v_max: float, nodes: int = 400) -> float:
    """Integral of f(u, v) over (0, u_max) x (0, v_max) by Gauss-Legendre after u = u_max a^5,
    v = v_max b^5, which smooths the integrable singularities of gamma/beta densities at 0."""
    z, w = np.polynomial.legendre.leggauss(nodes)
    a, wa = (z + 1) / 2, w / 2
    u, du = u_max * a**5, u_max * 5 * a**4 * wa
    v, dv = v_max * a**5, v_max * 5 * a**4 * wa
    return float(np.einsum("i,j,ij->", du, dv, f(u[:, None], v[None, :])))


def test_bgnbd_likelihood_of_a_customer_without_repeats_is_the_nbd_zero_term():
    d = Rfm.of([0.0], [0.0], [30.0])
    want = BG.r * np.log(BG.alpha / (BG.alpha + 30.0))  # (alpha / (alpha + T)) ** r
    assert BG.log_likelihood(d)[0] == pytest.approx(want, rel=1e-10)


def test_bgnbd_likelihood_matches_integration_over_lambda_and_p():
    x, t_x, T = 3, 20.0, 35.0

    def individual(p, lam):  # FHL (2005) eq. (3)
        alive = (1 - p) ** x * lam**x * np.exp(-lam * T)
        dead = p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x)
        return (
            (alive + dead)
            * stats.gamma.pdf(lam, BG.r, scale=1 / BG.alpha)
            * stats.beta.pdf(p, BG.a, BG.b)
        )

    value = integrate_2d(individual, 1.0, 20.0)
    assert BG.log_likelihood(Rfm.of([x], [t_x], [T]))[0] == pytest.approx(np.log(value), abs=1e-4)


def test_pareto_nbd_likelihood_matches_integration_over_lambda_and_mu():
    for model in (PN, ParetoNbd(0.553, 8.0, 0.606, 11.669)):  # alpha < beta and alpha > beta
        x, t_x, T = 2, 15.0, 30.0

        def individual(mu, lam, m=model, x=x, t_x=t_x, T=T):
            survive = lam**x * np.exp(-(lam + mu) * T)
            die = lam**x * mu / (lam + mu) * (np.exp(-(lam + mu) * t_x) - np.exp(-(lam + mu) * T))
            prior = stats.gamma.pdf(lam, m.r, scale=1 / m.alpha)
            return (survive + die) * prior * stats.gamma.pdf(mu, m.s, scale=1 / m.beta)

        value = integrate_2d(individual, 5.0, 10.0)
        got = model.log_likelihood(Rfm.of([x], [t_x], [T]))[0]
        assert got == pytest.approx(np.log(value), abs=1e-3)


def test_expectations_are_consistent():
    d = Rfm.of([0, 2, 7], [0.0, 10.0, 30.0], [38.0, 38.0, 38.0])
    for model in (BG, PN):
        short = model.expected(d, 1e-4) / 1e-4  # rate right after T: P(alive) (r+x)/(alpha+T)
        want = model.p_alive(d) * (model.r + d.x) / (model.alpha + d.T)
        np.testing.assert_allclose(short, want, rtol=1e-3)
        n39, p39 = model.expected(d, 39.0), model.p_any(d, 39.0)
        assert np.all((p39 > 0) & (p39 <= n39 + 1e-12) & (p39 <= model.p_alive(d)))
    assert BG.p_alive(d)[0] == 1.0  # BG/NBD: nobody drops out before a repeat


def test_bgnbd_fit_recovers_simulated_parameters():
    rng = np.random.default_rng(0)
    n, T = 20_000, 39.0
    lam = rng.gamma(0.5, 1 / 5.0, n)
    p = rng.beta(0.8, 2.5, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):  # purchase, then drop out with probability p after each
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < p[i]:
                break
    fitted = BgNbd.fit(Rfm.of(x, t_x, np.full(n, T)))
    assert fitted.r == pytest.approx(0.5, rel=0.1) and fitted.alpha == pytest.approx(5.0, rel=0.2)
    assert fitted.a == pytest.approx(0.8, rel=0.25) and fitted.b == pytest.approx(2.5, rel=0.3)


def test_gamma_gamma_shrinks_towards_the_population_mean():
    gg = GammaGamma(p=6.25, q=3.74, gamma=15.44)  # FHL (2005) "RFM and CLV", CDNOW sample
    d = Rfm.of([0, 1, 50], [0, 5, 30], [30, 30, 30], [0.0, 100.0, 100.0])
    ev = gg.expected_value(d)
    population = gg.p * gg.gamma / (gg.q - 1)
    assert ev[0] == pytest.approx(population)
    assert population < ev[1] < ev[2] < 100.0


@pytest.mark.skipif(not (CDNOW_DIR / "CDNOW_master.txt").is_file(), reason="run `make data`")
def test_cdnow_fits_are_close_to_the_published_sample_estimates():
    from training.data import load_cdnow
    from training.value.protocol import CDNOW_PROTOCOL, customer_days

    data = customer_days(load_cdnow(CDNOW_DIR).events)
    owners, rfm = rfm_at(data, CDNOW_PROTOCOL.as_of_day)
    assert owners.size == 23_570
    for fitted, published in (
        (BgNbd.fit(rfm), BG),
        (ParetoNbd.fit(rfm), PN),
        (GammaGamma.fit(rfm), GammaGamma(6.25, 3.74, 15.44)),
    ):
        # the published figures come from the 1/10 sample (2,357 customers): same process
        for got, want in zip(vars(fitted).values(), vars(published).values(), strict=True):
            assert got == pytest.approx(want, rel=0.3), (fitted, published)
