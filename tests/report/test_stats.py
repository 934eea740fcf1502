"""kmemdes/report/stats.py against Student-t tables and numerical integration."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemdes.report.stats import betainc, summarize, t_cdf, t_ppf, welch_p

# two-sided 95 % critical values t(0.975, df) from any Student-t table
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042, 120: 1.980}


def test_t_quantiles_match_the_table():
    for df, t in T975.items():
        assert abs(t_ppf(0.975, df) - t) < 5e-4, df
        assert abs(t_cdf(t, df) - 0.975) < 2e-4, df


def _t_pdf(x, v):
    return math.gamma((v + 1) / 2) / (math.sqrt(v * math.pi) * math.gamma(v / 2)) * (1 + x * x / v) ** (-(v + 1) / 2)


def test_t_cdf_matches_numerical_integration_at_real_df():
    for v, t in ((2.7, 1.3), (7.4, -2.1), (15.2, 0.4)):
        xs = np.linspace(-60, t, 400001)
        ys = np.array([_t_pdf(x, v) for x in xs[::100]])
        # Simpson on a coarse grid is plenty at these tails; the far tail beyond -60 is < 1e-4 for v >= 2.7
        approx = np.trapezoid(ys, xs[::100])
        assert abs(t_cdf(t, v) - approx) < 2e-4, (v, t)


def test_summary_and_confidence_interval():
    s = summarize([10.0, 12.0, 11.0, None])
    assert s.n == 3 and s.mean == 11.0 and abs(s.sd - 1.0) < 1e-12
    assert abs(s.half_width - 4.303 / math.sqrt(3)) < 1e-3
    one = summarize([5.0])
    assert one.n == 1 and one.half_width == 0.0
    same = summarize([0.1, 0.1, 0.1])
    assert same.mean == 0.1 and same.half_width == 0.0
    assert summarize([]) is None


def test_welch_p_hand_computed():
    # means 11 and 20, sd 1 each, n = 3: t = -9 / sqrt(2/3) = -11.02, df = 4 (Welch-Satterthwaite)
    xs = np.linspace(11.022703842524301, 3000, 2_000_001)
    tail = np.trapezoid(_t_pdf_vec(xs, 4), xs)
    assert abs(welch_p([10, 12, 11], [20, 21, 19]) - 2 * tail) < 1e-6
    assert welch_p([1, 2], [3]) is None
    assert welch_p([1, 1], [1, 1]) == 1.0 and welch_p([1, 1], [2, 2]) == 0.0


def _t_pdf_vec(x, v):
    return math.gamma((v + 1) / 2) / (math.sqrt(v * math.pi) * math.gamma(v / 2)) * (1 + x * x / v) ** (-(v + 1) / 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=8), st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=8))
def test_welch_is_symmetric_and_a_probability(a, b):
    p = welch_p(a, b)
    assert p is not None and 0.0 <= p <= 1.0
    assert abs(p - welch_p(b, a)) < 1e-9


@settings(max_examples=80, deadline=None)
@given(st.floats(0.2, 30), st.floats(0.2, 30), st.floats(0.001, 0.999))
def test_betainc_reflection(a, b, x):
    assert abs(betainc(a, b, x) + betainc(b, a, 1 - x) - 1.0) < 1e-9
