"""Statistics of a benchmark: pure functions on per-case scores (no I/O).

Scores are ``{case_id: value}`` mappings so that pairing is by case, never by
position: a method missing a case is an error, not a silently shorter vector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from scipy import stats as _sp


class StatisticsError(ValueError):
    """The inputs cannot be compared (missing cases, non-finite scores, too few cases)."""


def paired_arrays(a: Mapping[str, float], b: Mapping[str, float], name_a: str = "A", name_b: str = "B"
                  ) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Align two per-case score maps on their (identical) case sets; raise naming the cases that differ."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{name_b} is missing {len(only_a)} case(s) that {name_a} has: {_preview(only_a)}")
        if only_b:
            parts.append(f"{name_a} is missing {len(only_b)} case(s) that {name_b} has: {_preview(only_b)}")
        raise StatisticsError("paired comparison needs the same cases for both methods; " + "; ".join(parts))
    cases = sorted(a)
    x = np.array([a[c] for c in cases], dtype=float)
    y = np.array([b[c] for c in cases], dtype=float)
    bad = [c for c, u, v in zip(cases, x, y) if not (math.isfinite(u) and math.isfinite(v))]
    if bad:
        raise StatisticsError(f"non-finite scores for {len(bad)} case(s) ({_preview(bad)}) in {name_a} or {name_b}")
    return cases, x, y


def _preview(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise StatisticsError("no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0
                 ) -> Tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample cases with replacement, seeded (reproducible).

    The percentile method (not BCa) because it is defined for constant data and
    small samples, where BCa's acceleration is undefined.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise StatisticsError("bootstrap of no values")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    n: int                  # paired cases
    n_nonzero: int          # cases whose difference is not zero (what the 'wilcox' zero method ranks)
    mean_difference: float  # mean of (a - b)
    median_difference: float
    statistic: float
    p_value: float


def wilcoxon_paired(a: Mapping[str, float], b: Mapping[str, float], name_a: str = "A", name_b: str = "B",
                    zero_method: str = "wilcox") -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of a vs b on paired per-case scores (scipy).

    scipy's defaults otherwise (exact distribution for small samples without ties or
    zeros, normal approximation else). All differences zero -> p = 1 (no evidence of a
    difference; scipy warns and returns the same through a 0/0).
    """
    cases, x, y = paired_arrays(a, b, name_a, name_b)
    d = x - y
    if len(cases) < 2:
        raise StatisticsError(f"Wilcoxon test of {name_a} vs {name_b} needs at least 2 paired cases, got {len(cases)}")
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        stat, p = 0.0, 1.0
    else:
        res = _sp.wilcoxon(x, y, zero_method=zero_method, alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    return PairedTest(len(cases), nonzero, float(d.mean()), float(np.median(d)), stat, p)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])  # monotone: never below a smaller p's adjusted value
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


@dataclass(frozen=True)
class MethodSummary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarise(values: Mapping[str, float], confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0
              ) -> MethodSummary:
    """Mean ± std and bootstrap CI of one method's per-case scores."""
    v = np.array(list(values.values()), dtype=float)
    if not np.all(np.isfinite(v)):
        raise StatisticsError("non-finite per-case scores")
    mean, std = mean_std(v)
    low, high = bootstrap_ci(v, confidence, n_resamples, seed)
    return MethodSummary(int(v.size), mean, std, low, high)


def compare_to_reference(scores: Mapping[str, Mapping[str, float]], reference: str
                         ) -> Dict[str, Tuple[PairedTest, float]]:
    """Wilcoxon of ``reference`` vs every other method, Holm-corrected over those comparisons.

    Returns ``{other: (test, holm_adjusted_p)}``.
    """
    if reference not in scores:
        raise StatisticsError(f"reference method {reference!r} is not among {sorted(scores)}")
    others = [m for m in scores if m != reference]
    tests = [wilcoxon_paired(scores[reference], scores[m], reference, m) for m in others]
    adjusted = holm([t.p_value for t in tests])
    return {m: (t, p) for m, t, p in zip(others, tests, adjusted)}


def per_case_mean(per_class: Mapping[str, Mapping[str, float]], drop_all_nan: bool = True
                  ) -> Tuple[Dict[str, float], List[str]]:
    """Per-case mean over classes, ignoring NaN classes as nnU-Net's own averages do.

    ``per_class``: ``{case: {class: dice}}``. Returns ``(means, dropped)``: cases whose
    every class is NaN (empty reference and prediction) are dropped and listed.
    """
    out, dropped = {}, []
    for case, classes in per_class.items():
        v = np.array(list(classes.values()), dtype=float)
        if v.size == 0 or np.all(np.isnan(v)):
            if not drop_all_nan:
                raise StatisticsError(f"case {case} has no finite class score")
            dropped.append(case)
            continue
        out[case] = float(np.nanmean(v))
    return out, dropped

