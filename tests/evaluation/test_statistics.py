"""Seed statistics and order claims on tiny hand-computed tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mle_hand_pipeline.evaluation.statistics import (
    _interval,
    crop_interval,
    holm,
    order_claims,
    paired_changes,
    paired_contrasts,
    paired_p_value,
    seed_and_crop_difference,
    seed_and_crop_interval,
    summarise_seeds,
    welch_p_value,
)

# Student-t quantile t_{0.975, df=2} (tables: 4.303), so the 95 % half-width for std 1, n 3 is
# 4.302653 / sqrt(3) = 2.484138.
T975_DF2 = 4.302652729911275


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b", "b", "c"],
            "noise": ["clean"] * 7,
            "seed": [0, 1, 2, 0, 1, 2, 0],
            "pck": [1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 5.0],
            "nme": [0.3, 0.3, np.nan, 0.1, 0.2, 0.3, 0.2],
        }
    )


def test_summarise_seeds_mean_std_student_t_interval():
    s = summarise_seeds(_runs(), by=["method", "noise"], metrics=["pck", "nme"])
    assert list(s.columns) == [
        "method",
        "noise",
        "n_seeds",
        *(f"pck_{x}" for x in ("n", "mean", "std", "ci_low", "ci_high")),
        *(f"nme_{x}" for x in ("n", "mean", "std", "ci_low", "ci_high")),
    ]
    a, b, c = (s[s["method"] == m].iloc[0] for m in "abc")
    assert a["n_seeds"] == 3 and a["pck_mean"] == 2.0 and a["pck_std"] == pytest.approx(1.0)
    half = T975_DF2 / math.sqrt(3)
    assert (a["pck_ci_low"], a["pck_ci_high"]) == pytest.approx((2.0 - half, 2.0 + half))
    # ties: three equal values -> std 0, a zero-width interval at the value
    assert b["pck_std"] == 0.0 and b["pck_ci_low"] == b["pck_ci_high"] == 10.0
    # n = 1: a mean but no spread and no interval
    assert c["n_seeds"] == 1 and c["pck_mean"] == 5.0
    assert all(math.isnan(c[k]) for k in ("pck_std", "pck_ci_low", "pck_ci_high"))
    # a NaN value (diverged run) is left out of that metric only: a's nme from 2 seeds, equal -> std 0
    assert a["nme_mean"] == pytest.approx(0.3) and a["nme_std"] == 0.0
    assert a["nme_n"] == 2 and a["pck_n"] == 3 and a["n_seeds"] == 3
    # a wider confidence widens the interval
    s99 = summarise_seeds(_runs(), by=["method"], metrics=["pck"], confidence=0.99)
    assert s99.loc[0, "pck_ci_high"] > a["pck_ci_high"]


def test_summarise_seeds_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="'test_nme'"):
        summarise_seeds(_runs(), by=["method"], metrics=["test_nme"])
    with pytest.raises(ValueError, match="confidence"):
        summarise_seeds(_runs(), by=["method"], metrics=["pck"], confidence=95)


def _summary(rows):
    return pd.DataFrame(
        rows, columns=["method", "noise", "n_seeds", "pck_mean", "pck_std", "pck_ci_low", "pck_ci_high"]
    )


def test_order_claims_only_separated_intervals():
    summary = _summary(
        [
            ["mle", "clean", 3, 0.50, 0.01, 0.48, 0.52],
            ["integral", "clean", 3, 0.60, 0.01, 0.58, 0.62],  # separated from mle
            ["rle", "clean", 3, 0.55, 0.05, 0.45, 0.65],  # overlaps both
            ["cpm", "clean", 1, 0.90, np.nan, np.nan, np.nan],  # one seed: no interval, no claim
        ]
    )
    claims = order_claims(summary, "pck", higher_is_better=True)
    assert claims == [
        "integral beats mle on pck (noise=clean): 0.600 [0.580, 0.620] vs 0.500 [0.480, 0.520], "
        "intervals do not overlap (3 vs 3 seeds)."
    ]
    # lower is better (an NME): the same intervals now put mle ahead
    assert order_claims(summary, "pck", higher_is_better=False)[0].startswith("mle beats integral")
    # touching intervals are not separated
    touching = summary.copy()
    touching.loc[1, "pck_ci_low"] = 0.52
    assert order_claims(touching, "pck", higher_is_better=True) == []


def test_order_claims_never_mix_conditions():
    summary = _summary(
        [
            ["mle", "clean", 3, 0.50, 0.01, 0.49, 0.51],
            ["integral", "outliers30", 3, 0.70, 0.01, 0.69, 0.71],
            ["mle", "outliers30", 3, 0.40, 0.01, 0.39, 0.41],
        ]
    )
    claims = order_claims(summary, "pck", higher_is_better=True)
    assert len(claims) == 1 and "(noise=outliers30)" in claims[0]
    assert claims[0].startswith("integral beats mle")
    with pytest.raises(ValueError, match="nme_mean"):
        order_claims(summary, "nme", higher_is_better=False)


def test_summary_feeds_claims_end_to_end():
    runs = pd.DataFrame({"method": ["x"] * 3 + ["y"] * 3, "pck": [0.1, 0.11, 0.12, 0.5, 0.51, 0.52]})
    claims = order_claims(summarise_seeds(runs, ["method"], ["pck"]), "pck", higher_is_better=True)
    assert len(claims) == 1 and claims[0].startswith("y beats x on pck:")


def test_a_claim_on_a_zero_width_interval_says_so():
    # a discrete metric: every seed of x hits the same number of keypoints
    runs = pd.DataFrame({"method": ["x"] * 3 + ["y"] * 3, "pck": [0.5, 0.5, 0.5, 0.1, 0.11, 0.12]})
    (claim,) = order_claims(summarise_seeds(runs, ["method"], ["pck"]), "pck", higher_is_better=True)
    assert claim.endswith("(3 vs 3 seeds); x: the same value in every seed (a zero-width interval).")


def test_claims_count_the_seeds_whose_values_made_the_interval():
    # y's third seed diverged (NaN): its interval comes from 2 values, and the claim says so
    runs = pd.DataFrame({"method": ["x"] * 3 + ["y"] * 3, "pck": [0.1, 0.11, 0.12, 0.5, 0.501, np.nan]})
    summary = summarise_seeds(runs, ["method"], ["pck"])
    assert summary.set_index("method")["n_seeds"].to_dict() == {"x": 3, "y": 3}
    (claim,) = order_claims(summary, "pck", higher_is_better=True)
    assert claim.endswith("intervals do not overlap (2 vs 3 seeds).")


def test_paired_changes_remove_the_seed_to_seed_spread():
    # seeds differ a lot (0.1 apart), but every seed loses 0.05 +- 0.01 on the noisy labels
    runs = pd.DataFrame(
        {
            "method": ["m"] * 6,
            "noise": ["clean"] * 3 + ["noisy"] * 3,
            "seed": [0, 1, 2, 2, 0, 1],  # any order: pairs are matched on the seed
            "pck": [0.3, 0.4, 0.5, 0.46, 0.24, 0.35],
        }
    )
    changes = paired_changes(runs, ["method"], "noise", "clean", ["pck"])
    (row,) = changes.to_dict("records")
    assert row["noise"] == "noisy" and row["n_seeds"] == 3 and row["pck_n"] == 3
    assert row["pck_mean"] == pytest.approx(-0.05) and row["pck_std"] == pytest.approx(0.01)
    assert row["pck_ci_high"] < 0  # paired: clearly worse
    unpaired = summarise_seeds(runs, ["noise"], ["pck"]).set_index("noise")
    assert unpaired.loc["noisy", "pck_ci_high"] > unpaired.loc["clean", "pck_ci_low"]  # unpaired: overlap
    # a seed without a partner, or with a NaN value, is left out of that metric
    runs.loc[5, "pck"] = np.nan
    extra = pd.DataFrame({"method": ["m"], "noise": ["noisy"], "seed": [7], "pck": [0.1]})
    row = paired_changes(pd.concat([runs, extra]), ["method"], "noise", "clean", ["pck"]).iloc[0]
    assert row["n_seeds"] == 3 and row["pck_n"] == 2


def test_paired_changes_refuse_two_runs_of_one_seed():
    runs = pd.DataFrame({"method": ["m"] * 3, "noise": ["clean", "clean", "noisy"], "seed": [0, 0, 0]})
    runs["pck"] = 0.5
    with pytest.raises(ValueError, match=r"'method': 'm'\} has two runs for one seed"):
        paired_changes(runs, ["method"], "noise", "clean", ["pck"])


def _noisy_grid() -> pd.DataFrame:
    """x loses 0.10 and y 0.15 on noisy labels, plus a label draw per seed (-0.2, 0, +0.2) that both
    methods of that seed share, and a small wobble of their own."""
    rows = []
    for seed, draw in enumerate((-0.2, 0.0, 0.2)):
        for method, loss, wobble in (
            ("x", 0.10, (0.01, -0.01, 0.0)[seed]),
            ("y", 0.15, (0.0, 0.01, -0.01)[seed]),
        ):
            clean = 0.5 + 0.05 * seed
            rows.append({"init": "s", "method": method, "noise": "clean", "seed": seed, "pck": clean})
            noisy = clean - loss + draw + wobble
            rows.append({"init": "s", "method": method, "noise": "noisy", "seed": seed, "pck": noisy})
    return pd.DataFrame(rows)


def test_paired_contrasts_remove_the_shared_label_draw():
    runs = _noisy_grid()
    changes = paired_changes(runs, ["method"], "noise", "clean", ["pck"]).set_index("method")
    assert changes.loc["x", "pck_ci_low"] < changes.loc["y", "pck_ci_high"]  # the changes' intervals overlap
    (row,) = paired_contrasts(runs, ["init"], "noise", "clean", "method", ["pck"]).to_dict("records")
    assert (row["method_a"], row["method_b"], row["noise"], row["n_seeds"]) == ("x", "y", "noisy", 3)
    # per seed: (x change) - (y change) = 0.05 + (0.01, -0.02, 0.01)
    assert row["pck_mean"] == pytest.approx(0.05)
    assert row["pck_std"] == pytest.approx(math.sqrt((0.01**2 + 0.02**2 + 0.01**2) / 2))
    assert row["pck_ci_low"] > 0  # paired: x loses less than y
    # a seed that lacks one of its four runs is left out
    fewer = paired_contrasts(runs.iloc[1:], ["init"], "noise", "clean", "method", ["pck"]).iloc[0]
    assert fewer["n_seeds"] == 2 and fewer["pck_n"] == 2
    assert paired_contrasts(runs[runs["method"] == "x"], ["init"], "noise", "clean", "method", ["pck"]).empty
    with pytest.raises(
        ValueError, match=r"paired_contrasts: \{'init': 's', 'method': 'x'\} has two runs for one seed"
    ):
        paired_contrasts(pd.concat([runs, runs.iloc[:1]]), ["init"], "noise", "clean", "method", ["pck"])


# Two-sided 95 % Student-t quantiles t_{0.975, n-1} from printed tables, for n = 2..6 seeds.
T_TABLE = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571}


@pytest.mark.parametrize("n", sorted(T_TABLE))
def test_student_t_interval_of_2_to_6_seeds_against_the_table_and_scipy(n):
    from scipy import stats

    values = np.array([0.31, 0.27, 0.35, 0.22, 0.30, 0.41][:n])
    runs = pd.DataFrame({"method": "m", "seed": range(n), "pck": values})
    row = summarise_seeds(runs, ["method"], ["pck"]).iloc[0]
    std = math.sqrt(sum((v - values.mean()) ** 2 for v in values) / (n - 1))
    half = (row["pck_ci_high"] - row["pck_ci_low"]) / 2
    assert row["pck_mean"] == pytest.approx(values.mean()) and row["pck_std"] == pytest.approx(std)
    assert half / (std / math.sqrt(n)) == pytest.approx(T_TABLE[n], abs=5e-4)
    assert half == pytest.approx(stats.t.ppf(0.975, df=n - 1) * std / math.sqrt(n), rel=1e-12)


def test_paired_intervals_against_a_direct_computation():
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(5):
        for method, loss in (("x", 0.05), ("y", 0.1)):
            clean = 0.5 + rng.normal(0, 0.05)
            rows.append({"g": 0, "method": method, "noise": "clean", "seed": seed, "pck": clean})
            rows.append(
                {
                    "g": 0,
                    "method": method,
                    "noise": "noisy",
                    "seed": seed,
                    "pck": clean - loss + rng.normal(0, 0.02),
                }
            )
    runs = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # pairs are found by seed, not by order
    t = 2.776445  # t_{0.975, df=4}, tables to 6 digits

    def direct(differences):
        d = np.asarray(differences)
        mean, std = d.mean(), d.std(ddof=1)
        return mean, std, mean - t * std / math.sqrt(len(d)), mean + t * std / math.sqrt(len(d))

    def value(method, noise, seed):
        return runs.query("method == @method and noise == @noise and seed == @seed")["pck"].item()

    change = {m: [value(m, "noisy", s) - value(m, "clean", s) for s in range(5)] for m in "xy"}
    changes = paired_changes(runs, ["method"], "noise", "clean", ["pck"]).set_index("method")
    for m in "xy":
        got = changes.loc[m, ["pck_mean", "pck_std", "pck_ci_low", "pck_ci_high"]].to_numpy(dtype=float)
        np.testing.assert_allclose(got, direct(change[m]), rtol=1e-6, atol=1e-8)
    (contrast,) = paired_contrasts(runs, ["g"], "noise", "clean", "method", ["pck"]).to_dict("records")
    got = [contrast[f"pck_{k}"] for k in ("mean", "std", "ci_low", "ci_high")]
    a, b = contrast["method_a"], contrast["method_b"]  # in order of first appearance
    assert {a, b} == {"x", "y"}
    np.testing.assert_allclose(got, direct(np.subtract(change[a], change[b])), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_the_95_percent_interval_covers_the_true_mean_in_95_percent_of_draws(n):
    draws = 2000
    rng = np.random.default_rng(n)
    values = rng.normal(0.4, 0.05, size=(draws, n))
    runs = pd.DataFrame({"draw": np.repeat(np.arange(draws), n), "pck": values.ravel()})
    summary = summarise_seeds(runs, ["draw"], ["pck"])
    covered = ((summary["pck_ci_low"] <= 0.4) & (0.4 <= summary["pck_ci_high"])).mean()
    # binomial sd of the coverage over 2000 draws: 0.005; a z-interval (no t) would cover ~70 % at n = 2
    assert covered == pytest.approx(0.95, abs=0.015)


def test_holm_adjusts_step_down_and_keeps_nan_out_of_the_family():
    # m = 4 finite tests: sorted 0.01, 0.02, 0.03, 0.5 -> 4*0.01, max(3*0.02, .04), max(2*0.03, .06), 0.5
    adjusted = holm([0.03, np.nan, 0.01, 0.5, 0.02])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[2, 4, 0, 3]], [0.04, 0.06, 0.06, 0.5])
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # capped at 1


def test_the_paired_p_value_is_below_5_percent_exactly_when_the_paired_interval_excludes_0():
    rng = np.random.default_rng(0)
    for _ in range(50):
        diffs = rng.normal(rng.uniform(-1, 1), 1.0, size=int(rng.integers(2, 6)))
        n, mean, std, low, high = _interval(diffs, 0.95)
        p = paired_p_value(mean, std, n)
        assert p == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue)
        assert (p < 0.05) == (low > 0 or high < 0)
    assert np.isnan(paired_p_value(0.1, np.nan, 1))
    assert paired_p_value(0.2, 0.0, 3) == 0.0  # every seed the same non-zero change


def test_the_welch_p_value_is_scipys_on_the_raw_seeds():
    a, b = np.array([0.70, 0.72, 0.74]), np.array([0.60, 0.66, 0.65, 0.61])
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    got = welch_p_value((a.mean(), a.std(ddof=1), a.size), (b.mean(), b.std(ddof=1), b.size))
    assert got == pytest.approx(expected)
    assert np.isnan(welch_p_value((0.7, np.nan, 1), (0.6, 0.01, 3)))


def test_a_crop_interval_narrows_with_more_crops_and_pairs_models_on_the_same_crops():
    rng = np.random.default_rng(0)
    hits = rng.binomial(21, 0.7, size=4000).astype(float)
    count = np.full(4000, 21.0)
    small = crop_interval(hits[:100], count[:100])
    large = crop_interval(hits, count)
    assert large[0] <= hits.sum() / count.sum() <= large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 4  # 40 times the crops: about 1/sqrt(40) as wide
    assert crop_interval(hits, count) == large  # seeded
    # three models on the same crops, equal but for a constant: the mean's interval is theirs shifted
    three = np.stack([hits, hits, hits])
    assert crop_interval(three, np.stack([count] * 3)) == pytest.approx(large)


def _seeds_on_shared_crops(shift: float, seeds: range, n_crops: int = 1500):
    """Per-crop hits of 18 keypoints for models of several seeds on the same crops: each crop has its
    own difficulty, shared by every model, plus a little per-model noise."""
    difficulty = np.random.default_rng(0).uniform(0.3, 1.0, n_crops)
    hits = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        p = np.clip(difficulty + shift + rng.normal(0, 0.05, n_crops), 0, 1)
        hits.append(rng.binomial(18, p))
    return np.array(hits, dtype=float), np.full((len(seeds), n_crops), 18.0)


def test_a_difference_on_shared_crops_is_measured_more_precisely_than_either_figure():
    a = _seeds_on_shared_crops(0.015, range(10, 13))
    b = _seeds_on_shared_crops(0.0, range(3))
    (_, a_low, a_high), (_, _, b_high) = seed_and_crop_interval(*a), seed_and_crop_interval(*b)
    assert a_low < b_high  # the two figures' intervals overlap ...
    difference, low, high = seed_and_crop_difference(a, b)
    assert 0 < low < difference < high  # ... but the difference, crops shared, excludes 0
    assert high - low < (a_high - a_low)
    seeds_a, seeds_b = a[0].sum(1) / a[1].sum(1), b[0].sum(1) / b[1].sum(1)
    assert difference == pytest.approx(seeds_a.mean() - seeds_b.mean())
    # groups of different sizes, and fewer than 2 seeds: no interval
    assert np.isfinite(seed_and_crop_difference((a[0][:2], a[1][:2]), b)[1])
    assert np.isnan(seed_and_crop_difference((a[0][:1], a[1][:1]), b)[1])


def test_the_interval_over_seeds_and_crops_contains_the_seeds_interval():
    hits, count = _seeds_on_shared_crops(0.0, range(3))
    mean, low, high = seed_and_crop_interval(hits, count)
    n, seeds_mean, *_ = _interval(hits.sum(1) / count.sum(1), 0.95)
    assert mean == pytest.approx(seeds_mean)
    crops_low, crops_high = crop_interval(hits, count)
    # both errors in it: wider than the crops' alone and than a normal interval on the seeds' spread
    assert high - low > 0.98 * (crops_high - crops_low)
    assert high - low > 2 * 1.96 * (hits.sum(1) / count.sum(1)).std(ddof=1) / np.sqrt(n)
    assert low < mean < high
    assert np.isnan(seed_and_crop_interval(hits[:1], count[:1])[1])
