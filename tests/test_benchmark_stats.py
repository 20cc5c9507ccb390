"""Benchmark statistics against scipy and hand computations (fast, no nnU-Net)."""
import math

import numpy as np
import pytest
from scipy import stats as sp

from rep3d_nnunet.benchmark import stats


def _cases(values):
    return {f"case_{i:02d}": float(v) for i, v in enumerate(values)}


A = [0.81, 0.77, 0.92, 0.65, 0.88, 0.71, 0.79, 0.84, 0.90, 0.69]
B = [0.78, 0.75, 0.90, 0.66, 0.83, 0.70, 0.74, 0.80, 0.91, 0.62]


def test_wilcoxon_matches_scipy_without_ties():
    t = stats.wilcoxon_paired(_cases(A), _cases(B))
    ref = sp.wilcoxon(A, B)
    assert t.statistic == pytest.approx(ref.statistic) and t.p_value == pytest.approx(ref.pvalue)
    assert t.n == 10 and t.n_nonzero == 10
    assert t.mean_difference == pytest.approx(np.mean(np.subtract(A, B)))


def test_wilcoxon_matches_scipy_with_ties_and_zero_differences():
    a = [0.80, 0.70, 0.90, 0.60, 0.85, 0.75, 0.95, 0.50]
    b = [0.78, 0.72, 0.88, 0.60, 0.83, 0.75, 0.93, 0.45]   # |d| ties at 0.02, two zeros
    t = stats.wilcoxon_paired(_cases(a), _cases(b))
    ref = sp.wilcoxon(a, b)  # scipy's default zero_method='wilcox' drops zeros
    assert t.p_value == pytest.approx(ref.pvalue) and t.statistic == pytest.approx(ref.statistic)
    assert t.n == 8 and t.n_nonzero == 6
    pratt = stats.wilcoxon_paired(_cases(a), _cases(b), zero_method="pratt")
    assert pratt.p_value == pytest.approx(sp.wilcoxon(a, b, zero_method="pratt").pvalue)


def test_wilcoxon_all_differences_zero_is_p_one():
    t = stats.wilcoxon_paired(_cases(A), _cases(A))
    assert t.p_value == 1.0 and t.n_nonzero == 0 and t.mean_difference == 0.0


def test_pairing_is_by_case_not_position():
    a = _cases(A)
    b = dict(reversed(list(_cases(B).items())))  # same cases, other order
    assert stats.wilcoxon_paired(a, b).p_value == pytest.approx(sp.wilcoxon(A, B).pvalue)


def test_missing_case_is_a_clear_error():
    b = _cases(B)
    del b["case_03"]
    with pytest.raises(stats.StatisticsError, match=r"resenc_m is missing 1 case\(s\) that rep3d has: case_03"):
        stats.wilcoxon_paired(_cases(A), b, "rep3d", "resenc_m")


def test_non_finite_score_is_a_clear_error():
    b = _cases(B)
    b["case_01"] = float("nan")
    with pytest.raises(stats.StatisticsError, match="non-finite.*case_01"):
        stats.wilcoxon_paired(_cases(A), b)


def test_holm_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04); back in input order
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # monotonicity: 0.03*2 = 0.06 would be below the first step's 0.005*3... step-down keeps the running max
    assert stats.holm([0.005, 0.03, 0.5]) == pytest.approx([0.015, 0.06, 0.5])
    assert stats.holm([0.02, 0.021]) == pytest.approx([0.04, 0.04])      # 0.021*1 raised to the running 0.04
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])           # capped at 1
    assert stats.holm([0.3]) == [0.3]


def test_bootstrap_reproducible_with_seed_and_seed_matters():
    x = np.random.default_rng(0).random(15)
    assert stats.bootstrap_ci(x, n_resamples=500, seed=3) == stats.bootstrap_ci(x, n_resamples=500, seed=3)
    assert stats.bootstrap_ci(x, n_resamples=500, seed=3) != stats.bootstrap_ci(x, n_resamples=500, seed=4)


def test_bootstrap_known_cases():
    # constant data: every resample has the same mean
    assert stats.bootstrap_ci([0.7] * 6) == pytest.approx((0.7, 0.7))
    # two values {0, 1}: the resampled mean is 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are 0 and 1
    assert stats.bootstrap_ci([0.0, 1.0], n_resamples=20000) == pytest.approx((0.0, 1.0))


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.beta(8, 2, size=40)
    ours = stats.bootstrap_ci(x, n_resamples=20000, seed=1)
    ref = sp.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, rng=np.random.default_rng(1))
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=3e-3)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=3e-3)


def test_summary_and_comparison_to_reference():
    scores = {"rep3d": _cases(A), "resenc_m": _cases(B), "same": _cases(A)}
    s = stats.summarise(scores["rep3d"], seed=0)
    assert s.mean == pytest.approx(np.mean(A)) and s.std == pytest.approx(np.std(A, ddof=1)) and s.n == 10
    assert s.ci_low < s.mean < s.ci_high
    comp = stats.compare_to_reference(scores, "rep3d")
    p = [sp.wilcoxon(A, B).pvalue, 1.0]
    assert comp["resenc_m"][1] == pytest.approx(stats.holm(p)[0])
    assert comp["same"][1] == 1.0
    with pytest.raises(stats.StatisticsError, match="reference method 'x'"):
        stats.compare_to_reference(scores, "x")


def test_per_case_mean_ignores_nan_classes_and_drops_empty_cases():
    means, dropped = stats.per_case_mean({"a": {"1": 0.8, "2": float("nan")}, "b": {"1": 0.6, "2": 0.4},
                                          "c": {"1": float("nan"), "2": float("nan")}})
    assert means == pytest.approx({"a": 0.8, "b": 0.5}) and dropped == ["c"]
    assert math.isnan(stats.mean_std([0.5])[1])
