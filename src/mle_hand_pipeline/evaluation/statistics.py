"""Summaries of several seeds per setting: mean, standard deviation and a Student-t interval of the mean.

Minimal version written by the `grid` helper so the comparison report runs; `pretrain_stats` owns this
module (same interface, see HELPERS.md) and its version replaces this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats


def summarise_seeds(
    runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """One row per group of ``by``: the ``by`` columns, ``n_seeds`` and per metric ``<m>_mean``,
    ``<m>_std`` (ddof 1), ``<m>_ci_low``, ``<m>_ci_high`` (Student-t interval of the mean; NaN when
    fewer than 2 seeds). Groups keep their order of first appearance."""
    by = list(by)
    rows = []
    for keys, group in runs.groupby(by, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys, strict=True))
        row["n_seeds"] = len(group)
        for metric in metrics:
            values = group[metric].to_numpy(float)
            values = values[np.isfinite(values)]
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            std = float(values.std(ddof=1)) if n > 1 else float("nan")
            half = (
                float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
            )
            row.update(
                {
                    f"{metric}_mean": mean,
                    f"{metric}_std": std,
                    f"{metric}_ci_low": mean - half,
                    f"{metric}_ci_high": mean + half,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def order_claims(summary: pd.DataFrame, metric: str, higher_is_better: bool, by: str = "method") -> list[str]:
    """One sentence per pair of ``by`` values whose intervals of ``metric`` do not overlap (better
    first); pairs whose intervals overlap, or lack one, are not claimed."""
    claims = []
    for (_, a), (_, b) in combinations(summary.iterrows(), 2):
        if not np.isfinite([a[f"{metric}_ci_low"], b[f"{metric}_ci_low"]]).all():
            continue
        if a[f"{metric}_ci_low"] > b[f"{metric}_ci_high"]:
            high, low = a, b
        elif b[f"{metric}_ci_low"] > a[f"{metric}_ci_high"]:
            high, low = b, a
        else:
            continue
        better, worse = (high, low) if higher_is_better else (low, high)

        def text(row: pd.Series) -> str:
            return (
                f"{row[f'{metric}_mean']:.4f} [{row[f'{metric}_ci_low']:.4f}, {row[f'{metric}_ci_high']:.4f}]"
            )

        claims.append(f"{better[by]} beats {worse[by]} on {metric}: {text(better)} vs {text(worse)}")
    return claims
