"""Small-sample statistics for experiment results: pure functions, no dependencies.

Replicate seeds are few (two or three), so intervals use Student's t rather than the
normal approximation; proportions use the Wilson score interval, which stays inside
[0, 1] at 0/n and n/n where the Wald interval collapses; paired correct/incorrect
outcomes against a base model use the exact (binomial) McNemar test, which is valid
for the handful of discordant pairs a small evaluation set gives.

The t quantile and the binomial tail are computed here rather than pulled from scipy:
two functions do not justify a 40 MB dependency on every login node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

#: Two-sided 95 % normal quantile (for the Wilson interval).
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    """Replicate statistics of one cell.

    Attributes:
        n: number of values.
        mean: arithmetic mean.
        std: sample standard deviation (n - 1 in the denominator); None for n < 2.
        sem: standard error of the mean; None for n < 2.
        ci_low, ci_high: Student-t 95 % interval of the mean; None for n < 2.
        min, max: extremes.
    """

    n: int
    mean: float
    std: float | None
    sem: float | None
    ci_low: float | None
    ci_high: float | None
    min: float
    max: float


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (modified Lentz), as in
    # Numerical Recipes 6.4; converges fast for x < (a + 1) / (a + b + 2).
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution of Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on the CDF; cached per df)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def summarize(values: list[float]) -> Summary:
    """Mean, sample std, standard error and the Student-t 95 % interval of replicates.

    The interval is not clipped to a metric's range: with two seeds it is wide, and
    showing it whole is the honest answer to "is this difference real".
    """
    if not values:
        raise ValueError("summarize needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Summary(n, mean, None, None, None, None, min(values), max(values))
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    sem = std / math.sqrt(n)
    half = t_quantile(0.975, n - 1) * sem
    return Summary(n, mean, std, sem, mean - half, mean + half, min(values), max(values))


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n``; always inside [0, 1]."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0/n and n/n the bound is exactly 0 or 1; floating point would leave 1e-17 off.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def binom_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    terms = [
        math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p))
        for i in range(k + 1)
    ]
    return min(1.0, math.fsum(terms))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts ``b`` and ``c``.

    Under the null hypothesis each discordant pair goes either way with probability
    1/2, so the p-value is twice the binomial tail of the smaller count (at most 1).
    No discordant pair gives p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), n))
