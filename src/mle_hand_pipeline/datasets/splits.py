"""Seeded, reproducible assignment of sample ids to splits."""

from __future__ import annotations

import numpy as np


def split_ids(n: int, ratios: dict[str, float], seed: int) -> list[str]:
    """Assign ``n`` samples to the splits named in ``ratios`` (normalised to sum to 1).

    A seeded permutation is cut at the cumulative ratios (rounded), so the same ``n``, ratios and seed
    always give the same assignment. Returns the split name of each sample id ``0..n-1``.
    """
    if not ratios or any(r < 0 for r in ratios.values()) or sum(ratios.values()) <= 0:
        raise ValueError(f"split ratios must be non-negative and not all zero, got {ratios}")
    names = sorted(ratios)  # sorted: the assignment must not depend on YAML key order
    weights = np.array([ratios[name] for name in names], dtype=float)
    bounds = np.round(np.cumsum(weights / weights.sum()) * n).astype(int)
    order = np.random.default_rng(seed).permutation(n)
    assignment = [""] * n
    start = 0
    for name, stop in zip(names, bounds, strict=True):
        for sample in order[start:stop]:
            assignment[sample] = name
        start = stop
    return assignment
