"""The comparison report: per-cell table, seed statistics, figures and a verdict that claims an order
only where the 95 % intervals do not overlap."""

import numpy as np
import pandas as pd
import pytest

from mle_hand_pipeline.evaluation.statistics import order_claims, paired_changes
from mle_hand_pipeline.grid import report as R

METRICS = {"test_nme": False, "test_pck_0.2": True}


def runs():
    """3 seeds: cpm clearly better than mle; mle and integral overlapping; 1 noise level more for mle."""
    rows = []
    for noise, shift in (("clean", 0.0), ("outliers30", 0.2)):
        for method, pck in (("mle", 0.40), ("integral", 0.41), ("cpm", 0.70)):
            if noise == "outliers30" and method != "mle":
                continue
            for seed, wobble in enumerate((-0.02, 0.0, 0.02)):
                rows.append(
                    {
                        "cell": f"{method}-{noise}-scratch-s{seed}",
                        "method": method,
                        "noise": noise,
                        "init": "scratch",
                        "seed": seed,
                        "run_id": f"id{len(rows)}",
                        "test_nme": 0.3 - pck / 4 + wobble + shift,
                        "test_pck_0.2": pck + wobble - shift,
                        "best_epoch": 1,
                    }
                )
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # MLflow's order is not the plan's


def test_cell_table_follows_the_plan_order():
    table = runs()
    order = list(table.sort_values(["noise", "seed", "method"])["cell"])
    cells = R.cell_table(table, list(METRICS), order=order)
    assert cells["cell"].tolist() == order
    assert list(cells.columns[: len(R.CELL_COLUMNS)]) == R.CELL_COLUMNS and "train_wall_time_s" in cells


def test_summary_figures_and_verdict():
    table = R.cell_table(runs(), list(METRICS), order=sorted(runs()["cell"]))
    summary = R.summarise(table, list(METRICS))
    assert len(summary) == 4 and (summary["n_seeds"] == 3).all()
    mle = summary.set_index(["method", "noise"]).loc[("mle", "clean")]
    assert mle["test_pck_0.2_mean"] == pytest.approx(0.40) and mle["test_pck_0.2_std"] == pytest.approx(0.02)
    # Student-t, 2 degrees of freedom: mean +- 4.303 * std / sqrt(3)
    assert mle["test_pck_0.2_ci_high"] - 0.40 == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)

    figures = R.figures(summary, table)
    assert set(figures) == {
        f"{m}_{kind}" for m in ("nme", "pck") for kind in ("by_method", "vs_noise", "change", "pretrained")
    }
    (no_pretrained,) = figures["pck_pretrained"].axes
    assert "no pretrained cell with a scratch cell of the same seed" in no_pretrained.texts[0].get_text()
    # the paired change: one row, mle on outliers30 (the only method with noisy cells)
    (change_axes,) = figures["pck_change"].axes
    assert [t.get_text() for t in change_axes.get_yticklabels()] == ["mle, outliers30"]
    clean_only = R.cell_table(runs().query("noise == 'clean'"), list(METRICS))
    (placeholder,) = R.figures(R.summarise(clean_only, list(METRICS)), clean_only)["pck_change"].axes
    assert "no change from 'clean' to show" in placeholder.texts[0].get_text()
    by_method = figures["pck_by_method"].axes[0]  # the clean level: 3 methods
    assert sorted(t.get_text() for t in by_method.get_xticklabels()) == ["cpm", "integral", "mle"]
    assert len(figures["pck_vs_noise"].legends[0].get_texts()) == 3

    planned = pd.DataFrame(
        {
            "cell": [*table["cell"], "rle-clean-scratch-s0", "rle-clean-scratch-s1"],
            "status": ["finished"] * len(table) + ["failed", "planned"],
            "error": [None] * len(table) + ["NonFiniteLossError: 20 steps", None],
        }
    )
    text = R.verdict("study", "rhd", summary, METRICS, planned, table)
    assert f"{len(table)} of {len(planned)} planned cells" in text
    assert "`rle-clean-scratch-s0`: failed: NonFiniteLossError: 20 steps" in text
    assert "`rle-clean-scratch-s1`: no finished run" in text
    assert "## Training labels `clean`, init `scratch`" in text
    claims = [line for line in text.splitlines() if " beats " in line]
    # cpm beats both on both metrics; mle vs integral overlap: never claimed
    assert any(line.startswith("- cpm beats mle on test_pck_0.2") for line in claims)
    assert any(line.startswith("- cpm beats integral on test_pck_0.2") for line in claims)
    assert not [line for line in claims if "mle" in line and "integral" in line]
    # robustness, paired by seed: each seed of mle loses exactly 0.2 PCK on 30 % outliers
    assert "## Robustness: the change from `clean` training labels, paired by seed" in text
    assert (
        "- mle: test_pck_0.2 worse by 0.2000 [-0.2000, -0.2000] (3 seeds paired; the change: the same "
        "value in every seed (a zero-width interval))." in text
    )


def test_the_verdict_says_when_runs_come_from_different_kinds_of_machine():
    table = runs()
    planned = pd.DataFrame({"cell": table["cell"]})
    summary = R.summarise(R.cell_table(table, list(METRICS)), list(METRICS))
    before_tags = R.verdict("study", "rhd", summary, METRICS, planned, R.cell_table(table, list(METRICS)))
    assert "machine" not in before_tags  # runs logged before the machine tags: nothing is claimed

    table["machine"] = "Intel Xeon (AVX512)"
    one = R.verdict("study", "rhd", summary, METRICS, planned, R.cell_table(table, list(METRICS)))
    assert "All tagged runs on one kind of machine: Intel Xeon (AVX512)." in one
    table.loc[table.index[:3], "machine"] = None
    partly = R.verdict("study", "rhd", summary, METRICS, planned, R.cell_table(table, list(METRICS)))
    assert "on one kind of machine: Intel Xeon (AVX512) (3 run(s) predate the machine tags)." in partly

    table["machine"] = "Intel Xeon (AVX512)"
    table.loc[table.index[:2], "machine"] = "AMD EPYC (AVX2)"
    two = R.verdict("study", "rhd", summary, METRICS, planned, R.cell_table(table, list(METRICS)))
    assert "2 kinds of machine (AMD EPYC (AVX2); Intel Xeon (AVX512))" in two


def test_a_seed_without_a_finite_value_is_named_in_the_table():
    table = runs()
    diverged = table.index[(table["method"] == "cpm") & (table["seed"] == 2)]
    table.loc[diverged, "test_nme"] = np.nan
    cells = R.cell_table(table, list(METRICS))
    summary = R.summarise(cells, list(METRICS))
    text = R.verdict("study", "rhd", summary, METRICS, pd.DataFrame({"cell": cells["cell"]}), cells)
    (cpm,) = [line for line in text.splitlines() if line.startswith("| cpm |")]
    assert "(1 of 3 seeds not finite)" in cpm.split("|")[3]  # test_nme
    assert "not finite" not in cpm.split("|")[4]  # test_pck_0.2 has all three


def test_the_pretrained_tables_point_to_cpm_scratch_rows():
    table = runs()
    pretrained = table[table["method"] == "mle"].assign(init="pretrained")
    pretrained["cell"] = pretrained["cell"].str.replace("scratch", "pretrained")
    cells = R.cell_table(pd.concat([table, pretrained]), list(METRICS))
    summary = R.summarise(cells, list(METRICS))
    text = R.verdict("study", "rhd", summary, METRICS, pd.DataFrame({"cell": cells["cell"]}), cells)
    scratch, pretrained_part = text.split("init `pretrained`", 1)
    assert "no pretrained cells" not in scratch
    # integral has a ResNet: its missing pretrained cells are not explained away
    assert "- cpm: no pretrained cells (no ResNet for the backbone" in pretrained_part


def _pretrained_and_scratch() -> pd.DataFrame:
    """3 seeds of mle and integral on clean labels, scratch and pretrained: mle's pretrained cells gain
    0.04, 0.05 and 0.06 PCK over the scratch cell of their seed, integral's -0.01, 0 and +0.01, while
    the seeds themselves spread by +-0.1 (so the unpaired intervals overlap); cpm has scratch cells only."""
    rows = []
    for seed, spread in enumerate((-0.1, 0.0, 0.1)):
        for method, gain in (
            ("mle", (0.04, 0.05, 0.06)[seed]),
            ("integral", (-0.01, 0.0, 0.01)[seed]),
            ("cpm", None),
        ):
            for init, pck in (("scratch", 0.5 + spread), ("pretrained", 0.5 + spread + (gain or 0.0))):
                if init == "pretrained" and gain is None:
                    continue
                cell = f"{method}-clean-{init}-s{seed}"
                rows.append({"cell": cell, "method": method, "noise": "clean", "init": init, "seed": seed})
                rows[-1].update({"run_id": cell, "test_nme": 1 - pck, "test_pck_0.2": pck})
    return R.cell_table(pd.DataFrame(rows), list(METRICS))


def test_pretraining_is_the_pretrained_cell_minus_the_scratch_cell_of_its_seed():
    table = _pretrained_and_scratch()
    changes = R.changes_from_scratch(table, list(METRICS)).set_index("method")
    assert sorted(changes.index) == ["integral", "mle"]  # cpm has no pretrained cells: no row
    assert (changes["init"] == "pretrained").all() and (changes["n_seeds"] == 3).all()
    half = 4.302653 * 0.01 / np.sqrt(3)  # Student-t, 2 degrees of freedom, std 0.01 of the differences
    assert changes.loc["mle", "test_pck_0.2_mean"] == pytest.approx(0.05)
    assert changes.loc["mle", "test_pck_0.2_ci_low"] == pytest.approx(0.05 - half)
    # unpaired, the seeds' spread of 0.1 would hide the gain
    summary = R.summarise(table, list(METRICS)).set_index(["method", "init"])
    assert (
        summary.loc[("mle", "pretrained"), "test_pck_0.2_ci_low"]
        < summary.loc[("mle", "scratch"), "test_pck_0.2_ci_high"]
    )

    summary = R.summarise(table, list(METRICS))
    text = R.verdict("study", "rhd", summary, METRICS, pd.DataFrame({"cell": table["cell"]}), table)
    assert "## Pretrained backbone: the change from a scratch backbone, paired by seed" in text
    assert (
        "- mle, `clean` labels, pretrained: test_pck_0.2 better by 0.0500 [+0.0252, +0.0748] "
        "(3 seeds paired)." in text
    )
    assert "- mle, `clean` labels, pretrained: test_nme better by 0.0500" in text
    assert "integral, `clean` labels, pretrained:" not in text  # -0.01, 0, +0.01: no claim
    (panel,) = R.figures(summary, table)["pck_pretrained"].axes
    assert sorted(t.get_text() for t in panel.get_yticklabels()) == ["integral, clean", "mle, clean"]


def test_the_verdict_has_no_pretraining_section_without_pairs():
    table = _pretrained_and_scratch()
    scratch_only = table[table["init"] == "scratch"]
    assert R.pretraining(scratch_only, METRICS) == []
    # pretrained cells whose seeds have no scratch cell: nothing to pair
    other_seeds = pd.concat(
        [scratch_only, table[table["init"] == "pretrained"].assign(seed=lambda t: t["seed"] + 3)]
    )
    assert R.changes_from_scratch(other_seeds, list(METRICS)).empty


def _two_methods_on_shared_draws(winner: str, loser: str) -> pd.DataFrame:
    """Every seed's corrupted labels cost both methods alike (-0.2, 0, +0.2); ``winner`` loses 0.05
    less PCK than ``loser`` (NME the mirror image)."""
    rows = []
    for seed, draw in enumerate((-0.2, 0.0, 0.2)):
        for method, loss, wobble in ((loser, 0.15, (0.0, 0.01, -0.01)[seed]), (winner, 0.10, 0.0)):
            for noise, pck in (("clean", 0.5), ("outliers30", 0.5 - loss + draw + wobble)):
                cell = f"{method}-{noise}-scratch-s{seed}"
                rows.append({"cell": cell, "method": method, "noise": noise, "init": "scratch", "seed": seed})
                rows[-1].update({"run_id": cell, "test_nme": 1 - pck, "test_pck_0.2": pck})
    return R.cell_table(pd.DataFrame(rows), list(METRICS))


@pytest.mark.parametrize("winner, loser", [("integral", "mle"), ("mle", "integral")])
def test_robustness_compares_methods_changes_seed_by_seed(winner, loser):
    table = _two_methods_on_shared_draws(winner, loser)
    text = "\n".join(R.robustness(table, METRICS))
    assert "| integral - mle | 3 |" in text  # cell_table orders by key: integral is always method_a
    assert "- No method is more robust" not in text
    # the sentence reads winner minus loser, whichever of the two is method_a
    claim = f"- {winner} is more robust to `outliers30` than {loser} on"
    assert f"{claim} test_pck_0.2: {winner}'s change minus {loser}'s +0.0500 [+0.0252, +0.0748]" in text
    assert f"{claim} test_nme: {winner}'s change minus {loser}'s -0.0500 [-0.0748, -0.0252]" in text
    # unpaired, the two methods' change intervals overlap: only the second pairing separates them
    changes = paired_changes(table, ["method"], "noise", "clean", ["test_pck_0.2"]).set_index("method")
    assert changes.loc[winner, "test_pck_0.2_ci_low"] < changes.loc[loser, "test_pck_0.2_ci_high"]


def _staged_runs() -> pd.DataFrame:
    """3 seeds of a 3-stage mle whose stage 3 gains 0.03 +- 0.01 PCK over stage 1, a 3-stage cpm whose
    gain straddles 0, and a one-stage rle (no stages to compare)."""
    rows = []
    for seed in range(3):
        for method, gains in (("mle", (0.02, 0.03, 0.04)), ("cpm", (-0.02, 0.01, 0.01)), ("rle", None)):
            row = {"cell": f"{method}-clean-scratch-s{seed}", "method": method, "noise": "clean"}
            row |= {"init": "scratch", "seed": seed, "test_stage1_pck_0.2": 0.5, "test_stage1_nme": 0.2}
            if gains is not None:
                row |= {"test_stage2_pck_0.2": 0.5 + gains[seed] / 2, "test_stage2_nme": 0.2}
                row |= {"test_stage3_pck_0.2": 0.5 + gains[seed], "test_stage3_nme": 0.2 - gains[seed] / 10}
            rows.append(row)
    return pd.DataFrame(rows)


def test_stage_gains_are_the_last_stage_minus_stage_one_of_each_run():
    stages = R.stage_table(_staged_runs())
    assert sorted(stages["method"].unique()) == ["cpm", "mle"]  # rle has one stage: left out
    assert (stages["stages"] == 3).all() and len(stages) == 6
    mle = stages[stages["method"] == "mle"].set_index("seed")
    assert mle["gain_pck_0.2"].tolist() == pytest.approx([0.02, 0.03, 0.04])
    assert mle["stageT_pck_0.2"].tolist() == pytest.approx([0.52, 0.53, 0.54])
    assert mle["gain_nme"].tolist() == pytest.approx([-0.002, -0.003, -0.004])

    summary = R.summarise_stages(stages).set_index("method")
    assert summary.loc["mle", "n_seeds"] == 3
    # paired: the interval of the per-seed differences, Student-t with 2 degrees of freedom
    half = 4.302653 * 0.01 / np.sqrt(3)
    assert summary.loc["mle", "gain_pck_0.2_ci_low"] == pytest.approx(0.03 - half)
    assert summary.loc["mle", "gain_pck_0.2_ci_high"] == pytest.approx(0.03 + half)

    text = "\n".join(R.stage_refinement(R.summarise_stages(stages)))
    assert "| mle | 3 | 3 | 0.2000 | 0.1970 |" in text
    assert (
        "- mle: stage 3 better than stage 1 on pck_0.2 by 0.0300 [+0.0052, +0.0548] (3 seeds paired)." in text
    )
    assert "- mle: stage 3 better than stage 1 on nme by 0.0030" in text
    assert "cpm: stage 3" not in text  # its interval straddles 0: no claim


def test_a_run_without_per_stage_metrics_has_no_stage_row_and_the_verdict_no_section():
    runs = _staged_runs().drop(columns=["test_stage3_pck_0.2"])
    stages = R.stage_table(runs)
    assert set(stages["stages"]) == {2}  # the last stage with every metric logged
    bare = R.stage_table(runs.drop(columns=[c for c in runs if c.startswith("test_stage")]))
    assert bare.empty and R.stage_refinement(R.summarise_stages(bare)) == []
    (placeholder,) = R.stage_figures(R.summarise_stages(bare))["pck_stages"].axes
    assert "no model with more than one stage" in placeholder.texts[0].get_text()


def _pair(family: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """The order comparison of methods ``a`` and ``b`` (either way round) on ``metric``."""
    names = {f"{a} vs {b}", f"{b} vs {a}"}
    order = family[(family["kind"] == "order") & (family["metric"] == metric)]
    return order[order["what"].str.split(",").str[0].isin(names)]


def test_the_verdict_counts_its_comparisons_and_says_which_claims_survive_holm():
    table = R.cell_table(runs(), list(METRICS), order=sorted(runs()["cell"]))
    summary = R.summarise(table, list(METRICS))
    family = R.comparisons(summary, table, METRICS)
    # clean: 3 methods -> 3 pairs x 2 metrics; outliers30: mle alone; one paired change x 2 metrics
    assert family["kind"].value_counts().to_dict() == {"order": 6, "noise change": 2}
    cpm_mle = _pair(family, "cpm", "mle", "test_pck_0.2")
    assert cpm_mle["claimed"].item() and cpm_mle["survives"].item()  # 0.30 apart, seeds 0.02 apart
    assert not _pair(family, "integral", "mle", "test_pck_0.2")["claimed"].item()
    assert (family["holm_p"] >= family["p"]).all()

    # A claim that holds on its own 95 % interval but not among many comparisons: mle's loss to
    # outliers, 0.03 / 0.05 / 0.07 by seed, has a paired interval just above 0 (p 0.049)
    close = table.copy()
    noisy = close["noise"] == "outliers30"
    clean_pck = close[close["noise"] == "clean"].set_index(["method", "seed"])["test_pck_0.2"]
    for index, row in close[noisy].iterrows():
        loss = (0.03, 0.05, 0.07)[row["seed"]]
        close.loc[index, "test_pck_0.2"] = clean_pck[(row["method"], row["seed"])] - loss
    close_summary = R.summarise(close, list(METRICS))
    close_family = R.comparisons(close_summary, close, METRICS)
    change = close_family[
        (close_family["kind"] == "noise change") & (close_family["metric"] == "test_pck_0.2")
    ]
    assert change["claimed"].item() and change["p"].item() == pytest.approx(0.0494, abs=1e-3)
    assert not change["survives"].item()
    text = R.verdict("study", "rhd", close_summary, METRICS, pd.DataFrame({"cell": close["cell"]}), close)
    assert "## Many comparisons: Holm's correction" in text
    claimed = int(close_family["claimed"].sum())
    survive = int(close_family["survives"].sum())
    assert f"makes {len(close_family)} comparisons" in text
    assert f"{survive} of the {claimed} claims survive" in text


def _per_crop(
    table: pd.DataFrame, n_crops: int, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per-crop parts for every run of ``table`` (21 keypoints per crop, hits drawn at the run's
    PCK@0.2), and the table with its test_pck_0.2 recomputed from them."""
    rng = np.random.default_rng(seed)
    parts, table = {}, table.copy()
    for index, row in table.iterrows():
        hits = rng.binomial(21, row["test_pck_0.2"], size=n_crops)
        parts[row["run_id"]] = pd.DataFrame(
            {"crop_path": [f"c{i}.jpg" for i in range(n_crops)], "n_normalised": 21, "pck_0.2_hits": hits}
        )
        table.loc[index, "test_pck_0.2"] = hits.sum() / (21 * n_crops)
    return table, parts


def test_intervals_over_seeds_and_test_crops_are_wider_and_drop_claims_the_crops_do_not_support():
    metrics = {"test_pck_0.2": True}
    table, parts = _per_crop(R.cell_table(runs(), list(metrics)), n_crops=2000)
    summary = R.with_crop_intervals(R.summarise(table, list(metrics)), table, parts, list(metrics))
    for _, row in summary.iterrows():  # seeds 0.02 apart dominate: about the seeds' interval (the
        # crops' many degrees of freedom may make it a hair narrower than Student-t on 2)
        seeds = row["test_pck_0.2_ci_high"] - row["test_pck_0.2_ci_low"]
        both = row["test_pck_0.2_crops_ci_high"] - row["test_pck_0.2_crops_ci_low"]
        assert 0.95 * seeds <= both
        assert row["test_pck_0.2_crops_ci_low"] < row["test_pck_0.2_mean"] < row["test_pck_0.2_crops_ci_high"]
    differences = R.crop_differences(table, parts, list(metrics))
    assert len(differences) == 3  # clean: 3 pairs; outliers30 has mle alone
    text = "\n".join(R.crop_section(summary, differences, metrics))
    assert "## Intervals over seeds and test crops" in text
    assert "- cpm beats mle on test_pck_0.2: cpm minus mle +0.29" in text  # 0.30 apart: any test set
    assert text.count("No order holds") == 0  # outliers30 has mle alone: nothing to order

    # 50 test crops, each all right or all wrong, mle right on the first ones and cpm on the last ones:
    # the seeds alone separate mle from cpm 0.12 above it, the test crops do not
    close = runs()
    close = close[close["noise"] == "clean"].copy()
    close.loc[close["method"] == "cpm", "test_pck_0.2"] -= 0.18
    close["test_pck_0.2"] = close["test_pck_0.2"].round(2)
    few = R.cell_table(close, list(metrics))
    few_parts = {}
    for _, row in few.iterrows():
        hits = np.zeros(50)
        hits[: round(50 * row["test_pck_0.2"])] = 21
        few_parts[row["run_id"]] = pd.DataFrame(
            {"crop_path": [f"c{i}.jpg" for i in range(50)], "n_normalised": 21,
             "pck_0.2_hits": hits if row["method"] != "cpm" else hits[::-1]}
        )  # fmt: skip
    seeds_only = R.summarise(few, list(metrics))
    assert any("cpm beats mle" in c for c in order_claims(seeds_only, "test_pck_0.2", True))
    with_crops = R.with_crop_intervals(seeds_only, few, few_parts, list(metrics))
    differences = R.crop_differences(few, few_parts, list(metrics))
    assert "cpm beats mle" not in "\n".join(R.crop_section(with_crops, differences, metrics))


def test_crop_intervals_are_left_out_for_runs_without_per_crop_tables_and_refused_across_test_splits():
    metrics = ["test_pck_0.2"]
    table, parts = _per_crop(R.cell_table(runs(), metrics), n_crops=50)
    first_mle = table.loc[table["method"] == "mle", "run_id"].iloc[0]
    without = {k: v for k, v in parts.items() if k != first_mle}
    summary = R.with_crop_intervals(R.summarise(table, metrics), table, without, metrics)
    assert summary.loc[summary["method"] == "mle", "test_pck_0.2_crops_ci_low"].isna().any()
    assert summary.loc[summary["method"] == "cpm", "test_pck_0.2_crops_ci_low"].notna().all()

    other_split = {**parts, first_mle: parts[first_mle].assign(crop_path=lambda f: "x" + f["crop_path"])}
    with pytest.raises(ValueError, match="were tested on different crops"):
        R.with_crop_intervals(R.summarise(table, metrics), table, other_split, metrics)
