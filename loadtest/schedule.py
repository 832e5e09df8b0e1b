"""When each request is due: arrival offsets in seconds from the start of a run.

Open-loop load follows these times whatever the server does; a request that could not be sent
on time is still timed from its due time (see loadtest.runner).
"""

from __future__ import annotations

import numpy as np

KINDS = ("constant", "poisson")


def arrivals(
    kind: str,
    rate: float,
    duration_s: float,
    *,
    max_count: int,
    seed: int = 0,
    phase_s: float = 0.0,
) -> np.ndarray:
    """float64[n] ascending offsets in [0, duration_s), n <= max_count.

    constant: one request every 1/rate s, starting at phase_s (workers sharing a rate use
    phases 0, 1/R, 2/R, ... so their union is again evenly spaced).
    poisson: exponential gaps with mean 1/rate (independent streams add up to a Poisson stream).
    """
    if kind not in KINDS:
        raise ValueError(f"schedule must be one of {', '.join(KINDS)}, got {kind!r}")
    if rate <= 0 or duration_s <= 0 or max_count <= 0:
        return np.zeros(0, dtype=np.float64)
    expected = int(rate * duration_s) + 1
    if kind == "constant":
        times = phase_s + np.arange(min(expected, max_count), dtype=np.float64) / rate
    else:
        rng = np.random.default_rng(seed)
        n = min(max_count, expected + 6 * int(np.sqrt(expected)) + 16)  # covers duration w.h.p.
        times = np.cumsum(rng.exponential(1.0 / rate, size=n))
    return times[times < duration_s][:max_count]
