"""Replica statistics for comparisons: mean, 95 % confidence interval, Welch's t-test.

Runs whose configs differ only in ``seed`` are replicas of one configuration.  A
comparison shows their mean with a Student-t 95 % confidence interval and marks a
difference to the baseline as beyond run-to-run noise when Welch's unequal-variance
t-test gives p < 0.05.  The t distribution is computed here (regularised incomplete beta
by Lentz's continued fraction) so no SciPy is needed.

>>> round(t_cdf(2.0, 10), 6)              # scipy.stats.t.cdf(2, 10) = 0.963306
0.963306
>>> round(t_ppf(0.975, 4), 4)             # scipy.stats.t.ppf(0.975, 4) = 2.7764
2.7764
>>> s = summarize([10.0, 12.0, 11.0])
>>> s.n, s.mean, round(s.half_width, 4)   # 2.4841 = t(0.975, 2) * 1 / sqrt(3)
(3, 11.0, 2.4841)
>>> round(welch_p([10, 12, 11], [20, 21, 19]), 6)   # t = -11.02, df = 4; numerical integration of the pdf: 0.000385
0.000385
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["Summary", "summarize", "welch_p", "t_cdf", "t_ppf", "betainc", "paired_difference"]


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
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
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b).

    >>> round(betainc(2, 3, 0.4), 6)          # scipy.special.betainc(2, 3, 0.4) = 0.5248
    0.5248
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` (real, > 0) degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """Inverse of :func:`t_cdf` (bisection; |error| < 1e-10)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class Summary:
    """Replicas of one metric: ``n`` values, ``mean``, sample standard deviation ``sd``,
    and ``half_width`` of the 95 % confidence interval of the mean (0 when n < 2)."""

    n: int
    mean: float
    sd: float
    half_width: float


def summarize(values: Sequence[float]) -> Optional[Summary]:
    """Mean and Student-t 95 % confidence interval of the non-missing ``values`` (None if none)."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    n = len(v)
    if n == 0:
        return None
    mean = math.fsum(v) / n
    if n < 2 or min(v) == max(v):
        return Summary(n, min(v) if n else mean, 0.0, 0.0)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    return Summary(n, mean, sd, t_ppf(0.975, n - 1) * sd / math.sqrt(n))


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p-value of Welch's t-test between samples ``a`` and ``b`` (None if either has < 2 values).

    Two samples without variance have p = 1 when their means are equal and p = 0 otherwise.
    """
    sa, sb = summarize(a), summarize(b)
    if sa is None or sb is None or sa.n < 2 or sb.n < 2:
        return None
    va, vb = sa.sd ** 2 / sa.n, sb.sd ** 2 / sb.n
    if va + vb == 0.0:
        return 1.0 if sa.mean == sb.mean else 0.0
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    r = va / (va + vb)  # Welch-Satterthwaite df, in a form that cannot underflow
    df = 1.0 / (r * r / (sa.n - 1) + (1.0 - r) * (1.0 - r) / (sb.n - 1))
    return 2.0 * (1.0 - t_cdf(abs(t), df))


def paired_difference(a: list, b: list) -> dict | None:
    """Mean of b[i] - a[i] with the half-width of its 95 % CI (pairs with a missing side left out).

    >>> d = paired_difference([80, 84, 82], [94, 96, 95]); d["mean"], round(d["half_width"], 2), d["n"]
    (13.0, 2.48, 3)
    """
    d = [y - x for x, y in zip(a, b) if x is not None and y is not None]
    if not d:
        return None
    n = len(d)
    mean = math.fsum(d) / n
    if n < 2:
        return {"n": n, "mean": mean, "half_width": None}
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    return {"n": n, "mean": mean, "half_width": t_ppf(0.975, n - 1) * sd / math.sqrt(n)}
