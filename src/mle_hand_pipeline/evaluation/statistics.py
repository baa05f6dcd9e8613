"""Seed statistics for a comparison: mean, spread and a Student-t interval per group, and the only
order claims those intervals support (pure pandas/scipy; no Kedro, no torch).

A comparison trains each cell (method, noise level, init, ...) with several seeds. For one metric
and one group of ``n`` seeds with values ``x_1 .. x_n``:

    mean = sum_i x_i / n
    std  = sqrt( sum_i (x_i - mean)^2 / (n - 1) )                   (sample standard deviation)
    CI   = mean -/+ t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)  (Student-t interval of the mean)

With ``n < 2`` there is no spread to estimate: ``std`` and the interval are NaN (never a zero-width
interval that would look certain). NaN metric values (a diverged run) are left out of that metric's
statistics; ``n_seeds`` counts the rows of the group, ``<metric>_n`` the values the statistics used.

:func:`order_claims` claims "A is better than B" only when the two intervals do not overlap: a
conservative rule (non-overlapping 95 % intervals imply a difference at a level stricter than 5 %;
overlapping ones do not prove equality), chosen so that the written verdict never over-claims.
Where runs are paired (the same seed under two conditions, or two methods on the same seed's
corrupted labels), :func:`paired_changes` and :func:`paired_contrasts` give the interval of the
per-seed differences instead; a claim needs that interval to exclude 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats

STAT_SUFFIXES: tuple[str, ...] = ("n", "mean", "std", "ci_low", "ci_high")


def _interval(values: np.ndarray, confidence: float) -> tuple[int, float, float, float, float]:
    """``(n, mean, std, ci_low, ci_high)`` of the ``n`` finite ``values`` (NaN spread when n < 2)."""
    x = values[np.isfinite(values)]
    n = x.size
    if n == 0:
        return (0, *(math.nan,) * 4)
    mean = float(x.mean())
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1)) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def _statistics(values: pd.DataFrame, metrics: Sequence[str], confidence: float) -> dict[str, float]:
    """``<metric>_<suffix>`` (:data:`STAT_SUFFIXES`) of each metric column of ``values``."""
    out = {}
    for m in metrics:
        column = pd.to_numeric(values[m], errors="coerce").to_numpy(dtype=np.float64)
        for suffix, value in zip(STAT_SUFFIXES, _interval(column, confidence), strict=True):
            out[f"{m}_{suffix}"] = value
    return out


def summarise_seeds(
    runs: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per group of runs (one run per seed): mean, std and Student-t interval per metric.

    Args:
        runs: one row per finished run, with the ``by`` columns and the ``metrics`` columns (numeric;
            NaN for a missing value).
        by: grouping columns, e.g. ``["method", "noise", "init"]``.
        metrics: metric columns to summarise, e.g. ``["test_nme", "test_pck_0.2"]``.
        confidence: two-sided level of the interval, in ``(0, 1)``.

    Returns:
        DataFrame with the ``by`` columns, ``n_seeds`` (rows in the group) and, per metric ``m``,
        ``m_n`` (its finite values), ``m_mean``, ``m_std``, ``m_ci_low``, ``m_ci_high`` (NaN spread and
        interval when fewer than 2 finite values). Groups appear in order of first appearance in ``runs``.

    Raises:
        ValueError: naming a ``by`` or metric column that ``runs`` lacks, or a bad ``confidence``.
    """
    by = list(by)
    metrics = list(metrics)
    if not by:
        raise ValueError("summarise_seeds: `by` needs at least one grouping column")
    missing = [c for c in by + metrics if c not in runs.columns]
    if missing:
        raise ValueError(
            f"summarise_seeds: column(s) {missing} not in the runs table (columns: {list(runs.columns)})"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"summarise_seeds: confidence must be in (0, 1), got {confidence}")
    rows = []
    for key, group in runs.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, object] = dict(zip(by, key, strict=True))
        row["n_seeds"] = len(group)
        row.update(_statistics(group, metrics, confidence))
        rows.append(row)
    columns = by + ["n_seeds"] + [f"{m}_{s}" for m in metrics for s in STAT_SUFFIXES]
    return pd.DataFrame(rows, columns=columns)


def paired_changes(
    runs: pd.DataFrame,
    by: Sequence[str],
    across: str,
    baseline: str,
    metrics: Sequence[str],
    pair: str = "seed",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The change of each metric from the ``baseline`` level of ``across``, paired on ``pair``.

    A comparison's cells that differ only in their noise level share a seed's initial weights,
    sample order and augmentation, so ``value(level, seed) - value(baseline, seed)`` removes the
    seed-to-seed variation that an unpaired comparison of the two levels' intervals carries. Per group
    of ``by`` and each other level: mean, std and Student-t interval of those differences
    (:func:`summarise_seeds`'s columns, ``n_seeds`` = pairs, ``<metric>_n`` = finite pairs).

    Raises:
        ValueError: naming a missing column, or a group with two runs for one ``pair`` value.
    """
    by = list(by)
    rows = []
    for key, level, change in _changes_by_seed(runs, by, across, baseline, metrics, pair, "paired_changes"):
        row: dict[str, object] = dict(zip(by, key, strict=True))
        row.update({across: level, "n_seeds": len(change)})
        row.update(_statistics(change, metrics, confidence))
        rows.append(row)
    columns = [*by, across, "n_seeds", *(f"{m}_{s}" for m in metrics for s in STAT_SUFFIXES)]
    return pd.DataFrame(rows, columns=columns)


def _changes_by_seed(
    runs: pd.DataFrame,
    by: list[str],
    across: str,
    baseline: str,
    metrics: Sequence[str],
    pair: str,
    caller: str,
) -> Iterator[tuple[tuple, object, pd.DataFrame]]:
    """Per group of ``by`` and each level of ``across`` but ``baseline``: ``(key, level, changes)``,
    ``changes`` holding ``value(level) - value(baseline)`` of each metric, indexed by the ``pair``
    values that have both runs (NaN where a value is not a number).

    Raises:
        ValueError: naming ``caller`` and a missing column, or a group with two runs for one ``pair``.
    """
    missing = [c for c in [*by, across, pair, *metrics] if c not in runs.columns]
    if missing:
        raise ValueError(f"{caller}: column(s) {missing} not in the runs table")
    metrics = list(metrics)
    for key, group in runs.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if group.duplicated([across, pair]).any():
            raise ValueError(f"{caller}: {dict(zip(by, key, strict=True))} has two runs for one {pair}")
        values = group.set_index(pair)[metrics].apply(pd.to_numeric, errors="coerce")
        base = values[(group[across] == baseline).to_numpy()]
        for level in dict.fromkeys(group.loc[group[across] != baseline, across]):
            other = values[(group[across] == level).to_numpy()]
            common = base.index.intersection(other.index)
            yield key, level, other.loc[common] - base.loc[common]


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def paired_contrasts(
    runs: pd.DataFrame,
    by: Sequence[str],
    across: str,
    baseline: str,
    between: str,
    metrics: Sequence[str],
    pair: str = "seed",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Whether one ``between`` value's (a method's) change from the ``baseline`` level beats another's.

    For two methods ``a`` and ``b`` and one ``pair`` value (a seed), the contrast is
    ``(a(level) - a(baseline)) - (b(level) - b(baseline))``: in a comparison every method of a seed
    trains on the same corrupted labels, in the same order, so the contrast removes that draw's effect
    as well. Per group of ``by``, each other level and each pair of methods (in order of first
    appearance): mean, std and Student-t interval over the seeds that have all four runs
    (:func:`summarise_seeds`'s columns; ``n_seeds`` = those seeds; a pair without such a seed is
    left out).

    Returns:
        DataFrame with the ``by`` columns, ``across``, ``<between>_a``, ``<between>_b``, ``n_seeds``
        and the statistics of each metric.

    Raises:
        ValueError: naming a missing column, or a group with two runs of one method and level for one
            ``pair`` value.
    """
    by = list(by)
    by_level: dict[tuple, dict[object, pd.DataFrame]] = {}  # (key, level) -> {method: its changes}
    changes = _changes_by_seed(runs, [*by, between], across, baseline, metrics, pair, "paired_contrasts")
    for (*key, name), level, change in changes:
        by_level.setdefault((tuple(key), level), {})[name] = change
    rows = []
    for (key, level), named in by_level.items():
        names = list(named)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                seeds = named[a].index.intersection(named[b].index)  # all four runs
                if seeds.empty:
                    continue
                row: dict[str, object] = dict(zip(by, key, strict=True))
                row.update({across: level, f"{between}_a": a, f"{between}_b": b, "n_seeds": len(seeds)})
                row.update(_statistics(named[a].loc[seeds] - named[b].loc[seeds], metrics, confidence))
                rows.append(row)
    columns = [
        *by,
        across,
        f"{between}_a",
        f"{between}_b",
        "n_seeds",
        *(f"{m}_{s}" for m in metrics for s in STAT_SUFFIXES),
    ]
    return pd.DataFrame(rows, columns=columns)


def zero_width(low: float, high: float) -> bool:
    """Whether an interval has zero width up to float rounding (every seed gave the same value)."""
    return bool(np.isclose(low, high, rtol=1e-9, atol=1e-12))


def zero_width_note(names: list[str]) -> str:
    """The caveat of a claim resting on a zero-width interval: every seed gave the same value, which a
    discrete metric (PCK counts keypoints) does by chance; empty when ``names`` is."""
    if not names:
        return ""
    return f"; {' and '.join(names)}: the same value in every seed (a zero-width interval)"


def order_claims(summary: pd.DataFrame, metric: str, higher_is_better: bool, by: str = "method") -> list[str]:
    """The order claims the intervals support: one sentence per pair whose intervals do not overlap.

    Two rows are compared when every other grouping column they share (any non-statistic column
    besides ``by``, e.g. ``noise`` or ``init``) is equal, so a claim never mixes conditions. A pair
    whose intervals overlap, or where either interval is NaN (fewer than 2 seeds), gives no sentence:
    nothing else is claimed.

    Args:
        summary: :func:`summarise_seeds`'s output.
        metric: the metric's name without suffix (``summary`` holds ``<metric>_mean`` etc.).
        higher_is_better: True for PCK/AUC, False for NME/EPE.
        by: the column naming what is compared (default ``method``).

    Returns:
        Sentences such as ``"integral beats mle on test_pck_0.2 (noise=clean): 0.432 [0.420, 0.444]
        vs 0.338 [0.320, 0.356], intervals do not overlap (3 vs 3 seeds)."``, best first.

    Raises:
        ValueError: naming a missing column.
    """
    needed = [by] + [f"{metric}_{s}" for s in ("mean", "ci_low", "ci_high")]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(
            f"order_claims: column(s) {missing} not in the summary (columns: {list(summary.columns)})"
        )
    context = [
        c
        for c in summary.columns
        if c not in (by, "n_seeds") and not any(c.endswith(f"_{s}") for s in STAT_SUFFIXES)
    ]
    mean, low, high = (f"{metric}_{s}" for s in ("mean", "ci_low", "ci_high"))
    ordered = summary.sort_values(mean, ascending=not higher_is_better, kind="stable")
    groups = ordered.groupby(context, sort=False, dropna=False) if context else [((), ordered)]
    claims = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{c}={v}" for c, v in zip(context, key, strict=True))
        where = f" ({where})" if where else ""
        rows = group.to_dict("records")
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if not np.all(np.isfinite([a[low], a[high], b[low], b[high]])):
                    continue  # fewer than 2 seeds on one side: no interval, no claim
                separated = a[low] > b[high] if higher_is_better else a[high] < b[low]
                if not separated:
                    continue
                count = f"{metric}_n" if f"{metric}_n" in a else "n_seeds"  # the values the intervals used
                seeds = f" ({a[count]} vs {b[count]} seeds)" if count in a else ""
                claims.append(
                    f"{a[by]} beats {b[by]} on {metric}{where}: "
                    f"{_fmt(a[mean])} [{_fmt(a[low])}, {_fmt(a[high])}] vs "
                    f"{_fmt(b[mean])} [{_fmt(b[low])}, {_fmt(b[high])}], intervals do not overlap{seeds}"
                    f"{zero_width_note([r[by] for r in (a, b) if zero_width(r[low], r[high])])}."
                )
    return claims


def paired_p_value(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of a paired t-test: that ``n`` per-seed differences of mean ``mean`` and
    sample standard deviation ``std`` come from differences of mean 0 (NaN when ``n < 2``). The test
    :func:`paired_changes`'s interval excludes 0 by, so ``p < 1 - confidence`` exactly when it does."""
    if not (n >= 2 and np.isfinite(mean) and np.isfinite(std)):
        return math.nan
    if std == 0:  # every seed gave the same difference (a discrete metric can)
        return 0.0 if mean != 0 else 1.0
    t = mean / (std / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), df=n - 1))


def welch_p_value(a: tuple[float, float, int], b: tuple[float, float, int]) -> float:
    """Two-sided p-value of Welch's t-test between two groups given as ``(mean, std, n)`` (NaN when
    either has fewer than 2 seeds); the unpaired test beside :func:`order_claims`'s interval rule."""
    (mean_a, std_a, n_a), (mean_b, std_b, n_b) = a, b
    if not (n_a >= 2 and n_b >= 2 and np.all(np.isfinite([mean_a, std_a, mean_b, std_b]))):
        return math.nan
    if std_a == 0 and std_b == 0:
        return 0.0 if mean_a != mean_b else 1.0
    return float(stats.ttest_ind_from_stats(mean_a, std_a, n_a, mean_b, std_b, n_b, equal_var=False).pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of tests (NaN stays NaN, and is not counted).

    Sorted ascending, the i-th of m p-values (from 0) is multiplied by ``m - i``, the running maximum
    keeps the adjusted values in the same order, and they are capped at 1: a test is rejected at
    family-wise level alpha when its adjusted value is below alpha. (SciPy has the Benjamini-Hochberg
    procedure, ``stats.false_discovery_control``, which controls another error rate.)
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def _crop_bootstrap(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], confidence: float, n_resamples: int, seed: int
):
    """scipy's percentile bootstrap over crops of ``mean over seeds of group 0's metric`` minus that of
    group 1 (when given): each group is ``(numerator, count)`` of shape ``(R, N)``, on the same N crops,
    and every resample draws the same crops for every seed of every group."""
    sizes, samples = [], []
    for numerator, count in groups:
        numerator = np.atleast_2d(np.asarray(numerator, dtype=np.float64))
        count = np.atleast_2d(np.asarray(count, dtype=np.float64))
        sizes.append(len(numerator))
        samples += [*numerator, *count]  # one 1-D sample per seed and part: groups may differ in R

    def statistic(*parts: np.ndarray, axis: int = -1) -> np.ndarray:
        means, start = [], 0
        for r in sizes:
            numerators, counts = parts[start : start + r], parts[start + r : start + 2 * r]
            means.append(
                np.mean(
                    [n.sum(axis=axis) / c.sum(axis=axis) for n, c in zip(numerators, counts, strict=True)],
                    axis=0,
                )
            )
            start += 2 * r
        return means[0] if len(means) == 1 else means[0] - means[1]

    return stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        axis=-1,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def crop_interval(
    numerator: np.ndarray,
    count: np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval over test crops of a pooled metric ``sum(numerator) / sum(count)``.

    ``numerator`` and ``count`` are ``(N,)`` per-crop parts (:func:`.metrics.per_crop_sums`), or
    ``(R, N)`` for ``R`` models scored on the same crops, in which case the statistic is the mean of
    the ``R`` models' metrics and each resample draws the same crops for all of them (the test set's
    sampling error of a mean over seeds). Seeded: the same inputs give the same interval.
    """
    interval = _crop_bootstrap([(numerator, count)], confidence, n_resamples, seed).confidence_interval
    return float(interval.low), float(interval.high)


def _per_seed(numerator: np.ndarray, count: np.ndarray) -> np.ndarray:
    numerator, count = np.atleast_2d(numerator), np.atleast_2d(count)
    return numerator.sum(axis=1) / count.sum(axis=1)


def _seed_and_crop_half_width(
    seed_variances: Sequence[tuple[float, int]], crop_se: float, n_crops: int, confidence: float
) -> float:
    """Half-width of ``estimate -/+ t * sqrt(sum of seed variances of the means + crop_se^2)``, with
    Welch-Satterthwaite's degrees of freedom: each seed variance ``s^2 / R`` has ``R - 1``, the crop
    bootstrap's ``n_crops - 1``, so a figure whose error is mostly the test set's gets a normal
    quantile and one whose error is mostly the seeds' gets Student-t on the seeds."""
    parts = [(variance / n, n - 1) for variance, n in seed_variances] + [(crop_se**2, n_crops - 1)]
    total = sum(v for v, _ in parts)
    if total == 0:
        return 0.0
    df = total**2 / sum(v**2 / d for v, d in parts if d > 0 and v > 0)
    return float(stats.t.ppf((1.0 + confidence) / 2.0, df=df)) * math.sqrt(total)


def seed_and_crop_interval(
    numerator: np.ndarray, count: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of a metric over ``R`` seeds' models that sampling both the seeds and the
    test crops could move.

    ``numerator`` and ``count`` are ``(R, N)``: each seed's per-crop parts on the same ``N`` crops.
    The two errors add: the seeds' spread gives ``std^2 / R`` (as :func:`summarise_seeds`), the crops' a
    bootstrap variance of the seeds' mean (the same crops drawn for every seed, since every seed is
    scored on one test set); the quantile takes Welch-Satterthwaite's degrees of freedom. NaN bounds
    with fewer than 2 seeds.
    """
    per_seed = _per_seed(numerator, count)
    n, mean = per_seed.size, float(per_seed.mean())
    if n < 2:
        return mean, math.nan, math.nan
    crops = _crop_bootstrap([(numerator, count)], confidence, n_resamples, seed).standard_error
    half = _seed_and_crop_half_width([(per_seed.var(ddof=1), n)], crops, np.shape(numerator)[-1], confidence)
    return mean, mean - half, mean + half


def seed_and_crop_difference(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(difference, low, high)`` of two methods' mean metrics (``a`` minus ``b``, each ``(numerator,
    count)`` of shape ``(R, N)``, scored on the same N crops), sampling the seeds and the test crops.

    The seeds are independent between methods (Welch: ``s_a^2 / R_a + s_b^2 / R_b``); the crops are
    shared, so the bootstrap draws the same crops for both and the test set's part of the difference
    is what remains after the crops both methods find easy or hard cancel out. NaN bounds when either
    method has fewer than 2 seeds.
    """
    seeds_a, seeds_b = _per_seed(*a), _per_seed(*b)
    difference = float(seeds_a.mean() - seeds_b.mean())
    if seeds_a.size < 2 or seeds_b.size < 2:
        return difference, math.nan, math.nan
    crops = _crop_bootstrap([a, b], confidence, n_resamples, seed).standard_error
    variances = [(seeds_a.var(ddof=1), seeds_a.size), (seeds_b.var(ddof=1), seeds_b.size)]
    half = _seed_and_crop_half_width(variances, crops, np.shape(a[0])[-1], confidence)
    return difference, difference - half, difference + half
