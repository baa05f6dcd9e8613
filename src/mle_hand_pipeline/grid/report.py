"""The comparison report from its runs: per-cell table, seed summary, figures and a written verdict
that claims an order only where 95 % intervals over seeds do not overlap."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mle_hand_pipeline.evaluation.metrics import POOLED_PARTS
from mle_hand_pipeline.evaluation.statistics import (
    holm,
    order_claims,
    paired_changes,
    paired_contrasts,
    paired_p_value,
    seed_and_crop_difference,
    seed_and_crop_interval,
    summarise_seeds,
    welch_p_value,
    zero_width,
    zero_width_note,
)
from mle_hand_pipeline.grid import plots
from mle_hand_pipeline.methods import RESNET_METHODS

GROUP = ["method", "noise", "init"]
CELL_COLUMNS = ["cell", "method", "noise", "init", "seed", "run_id", "machine"]
# the validation figures of each run's evaluated (best) checkpoint, summarised beside the test metrics
VALIDATION_METRICS = ("best_val_nme", "best_val_pck_0.2")
EXTRA_METRICS = ("best_epoch", *VALIDATION_METRICS, "train_wall_time_s", "label_noise_label_nme")
# every run's per-stage test metrics (evaluate_test logs test_stage<t>_<metric>) and which way is better
STAGE_METRICS = {"nme": False, "pck_0.2": True}
_STAGE_COLUMN = re.compile(r"test_stage(\d+)_(.+)")


def cell_table(runs: pd.DataFrame, metrics: Sequence[str], order: Sequence[str] = ()) -> pd.DataFrame:
    """One row per cell: ``CELL_COLUMNS``, ``metrics`` and training facts, ordered by ``order``
    (cell keys; cells not in it come last, by key)."""
    columns = [*CELL_COLUMNS, *metrics, *[m for m in EXTRA_METRICS if m not in metrics]]
    table = runs.reindex(columns=columns).copy()
    rank = {key: i for i, key in enumerate(order)}
    table["_order"] = [rank.get(key, len(rank)) for key in table["cell"]]
    return table.sort_values(["_order", "cell"]).drop(columns="_order").reset_index(drop=True)


def summarise(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, std and 95 % interval over seeds per method x noise x init (``summarise_seeds``)."""
    return summarise_seeds(table, GROUP, list(metrics))


def _group_parts(
    table: pd.DataFrame, per_crop: Mapping[str, pd.DataFrame], key: Sequence
) -> list[pd.DataFrame] | None:
    """The per-crop tables of the runs of one method x noise x init (None when a run lacks one).

    Raises:
        ValueError: naming two runs of the comparison that were tested on different crops.
    """
    runs = table.loc[(table[GROUP] == list(key)).all(axis=1), "run_id"].tolist()
    if not runs or any(run not in per_crop for run in runs):
        return None
    reference_run = next(iter(per_crop))
    crops = per_crop[reference_run]["crop_path"]
    for run in runs:
        if not per_crop[run]["crop_path"].equals(crops):
            raise ValueError(
                f"runs {reference_run} and {run} ({', '.join(map(str, key))}) were tested on different "
                "crops: a comparison's runs must share one test split"
            )
    return [per_crop[run] for run in runs]


def _pooled(metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if m.removeprefix("test_") in POOLED_PARTS]


def _parts(frames: list[pd.DataFrame], metric: str) -> tuple[np.ndarray, np.ndarray]:
    numerator, count = POOLED_PARTS[metric.removeprefix("test_")]
    return np.stack([f[numerator].to_numpy() for f in frames]), np.stack(
        [f[count].to_numpy() for f in frames]
    )


def with_crop_intervals(
    summary: pd.DataFrame, table: pd.DataFrame, per_crop: Mapping[str, pd.DataFrame], metrics: Sequence[str]
) -> pd.DataFrame:
    """``summary`` plus ``<metric>_crops_ci_low`` / ``_crops_ci_high``: the 95 % interval of each
    group's mean that sampling both the seeds and the test crops could move
    (:func:`~..evaluation.statistics.seed_and_crop_interval`), for the pooled metrics
    (:data:`~..evaluation.metrics.POOLED_PARTS`, ``test_`` prefixed). NaN for a group with a run
    without its per-crop table (``per_crop``: run id -> table), or with fewer than 2 seeds.

    Raises:
        ValueError: naming two runs of the comparison that were tested on different crops.
    """
    out = summary.copy()
    pooled = _pooled(metrics)
    for metric in pooled:
        out[f"{metric}_crops_ci_low"] = out[f"{metric}_crops_ci_high"] = np.nan
    for index, row in out.iterrows():
        frames = _group_parts(table, per_crop, list(row[GROUP]))
        if frames is None or len(frames) < 2:
            continue
        for metric in pooled:
            _, low, high = seed_and_crop_interval(*_parts(frames, metric))
            out.loc[index, [f"{metric}_crops_ci_low", f"{metric}_crops_ci_high"]] = low, high
    return out


def crop_differences(
    table: pd.DataFrame, per_crop: Mapping[str, pd.DataFrame], metrics: Sequence[str]
) -> pd.DataFrame:
    """Each pair of methods per noise x init and pooled metric: the difference of their means (first
    minus second, in the table's order) and its 95 % interval over seeds and test crops, the crops
    shared (:func:`~..evaluation.statistics.seed_and_crop_difference`). Pairs with a run lacking its
    per-crop table are left out.

    Returns:
        Columns ``noise``, ``init``, ``method_a``, ``method_b``, ``metric``, ``difference``, ``low``,
        ``high``.
    """
    rows = []
    for (noise, init), group in table.groupby(["noise", "init"], sort=False):
        methods = list(dict.fromkeys(group["method"]))
        frames = {m: _group_parts(table, per_crop, [m, noise, init]) for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                if frames[a] is None or frames[b] is None:
                    continue
                for metric in _pooled(metrics):
                    difference, low, high = seed_and_crop_difference(
                        _parts(frames[a], metric), _parts(frames[b], metric)
                    )
                    rows.append(
                        {"noise": noise, "init": init, "method_a": a, "method_b": b, "metric": metric,
                         "difference": difference, "low": low, "high": high}
                    )  # fmt: skip
    columns = ["noise", "init", "method_a", "method_b", "metric", "difference", "low", "high"]
    return pd.DataFrame(rows, columns=columns)


def crop_section(summary: pd.DataFrame, differences: pd.DataFrame, metrics: Mapping[str, bool]) -> list[str]:
    """Markdown lines: each group's mean with its interval over seeds and over seeds and test crops, and
    the order of two methods wherever their difference's interval over seeds and the shared test crops
    excludes 0; none when no group has per-crop tables."""
    pooled = [m for m in metrics if f"{m}_crops_ci_low" in summary]
    if not pooled or summary[[f"{m}_crops_ci_low" for m in pooled]].isna().all().all():
        return []
    lines = [
        "",
        "## Intervals over seeds and test crops",
        "",
        "The intervals above cover the seeds only: every run is scored on the same test crops, and "
        "another draw of test images would move every figure. Here each mean carries [seeds] then "
        "[seeds and test crops] (a crop bootstrap of the seeds' mean added to the seeds' spread, "
        "Welch-Satterthwaite degrees of freedom). Two methods are ordered where the difference of their "
        "means, with the same crops drawn for both, has an interval over seeds and crops that excludes 0: "
        "a crop that is hard for one method is mostly hard for the other, so a difference is measured "
        "more precisely than either figure.",
    ]
    header = "| method | seeds | " + " | ".join(pooled) + " |"
    rule = "|---|---|" + "---|" * len(pooled)
    for (noise, init), group in summary.groupby(["noise", "init"], sort=False):
        lines += ["", f"### Training labels `{noise}`, init `{init}`", "", header, rule]
        for _, row in group.iterrows():
            values = " | ".join(
                f"{row[f'{m}_mean']:.4f} [{row[f'{m}_ci_low']:.4f}, {row[f'{m}_ci_high']:.4f}] "
                f"[{row[f'{m}_crops_ci_low']:.4f}, {row[f'{m}_crops_ci_high']:.4f}]"
                for m in pooled
            )
            lines.append(f"| {row['method']} | {row['n_seeds']} | {values} |")
        pairs = differences[(differences["noise"] == noise) & (differences["init"] == init)]
        claims = []
        for row in pairs.itertuples():
            if not (row.low > 0 or row.high < 0) or row.metric not in metrics:
                continue
            a_better = (row.low > 0) == metrics[row.metric]
            winner, loser = (row.method_a, row.method_b) if a_better else (row.method_b, row.method_a)
            sign = 1 if winner == row.method_a else -1
            low, high = sorted((sign * row.low, sign * row.high))
            claims.append(
                f"- {winner} beats {loser} on {row.metric}: {winner} minus {loser} "
                f"{sign * row.difference:+.4f} [{low:+.4f}, {high:+.4f}] over seeds and test crops."
            )
        if len(group) > 1:
            lines += [""] + (claims or ["- No order holds once the test crops are sampled too."])
    return lines


def figures(
    summary: pd.DataFrame, table: pd.DataFrame, nme: str = "test_nme", pck: str = "test_pck_0.2"
) -> dict[str, Figure]:
    """``{nme,pck}_by_method`` (first noise level, bars per init), ``{nme,pck}_vs_noise``,
    ``{nme,pck}_change`` (each method's change from the baseline labels, paired by seed) and
    ``{nme,pck}_pretrained`` (each pretrained cell's change from the same scratch cell, paired by seed)."""
    first = summary["noise"].iloc[0]
    clean = summary[summary["noise"] == first]
    baseline, changes = _changes_from_baseline(table, [nme, pck])
    from_scratch = changes_from_scratch(table, [nme, pck])
    out = {}
    for name, metric in (("nme", nme), ("pck", pck)):
        figure = plots.plot_seed_summary(clean, metric)
        figure.axes[0].set_title(f"{metric}, training labels: {first}")
        out[f"{name}_by_method"] = figure
        figure = plots.plot_metric_vs_noise(summary, metric)
        figure.suptitle(f"{metric} against training-label noise")
        out[f"{name}_vs_noise"] = figure
        out[f"{name}_change"] = plots.plot_paired_changes(changes, metric, baseline)
        out[f"{name}_pretrained"] = plots.plot_paired_changes(
            from_scratch,
            metric,
            "scratch",
            title=f"{metric}: pretrained backbone minus scratch, paired by seed",
            empty="no pretrained cell with a scratch cell of the same seed",
        )
    return out


def stage_table(runs: pd.DataFrame, metrics: Sequence[str] = tuple(STAGE_METRICS)) -> pd.DataFrame:
    """One row per cell whose model has more than one stage: ``GROUP``, ``cell``, ``seed``, ``stages``
    (T, the last stage the run logged every metric of) and per metric ``m``: ``stage1_m``, ``stageT_m``
    and ``gain_m = stageT_m - stage1_m``. Both values come from one run (the same weights and test
    crops), so a gain is paired by seed.

    Args:
        runs: one row per cell with every metric of its run as a column (``comparison_runs``).
        metrics: the stage metrics' names without the ``test_stage<t>_`` prefix.
    """
    stages: dict[str, set[int]] = {m: set() for m in metrics}
    for column in runs.columns:
        if (match := _STAGE_COLUMN.fullmatch(column)) and match.group(2) in stages:
            stages[match.group(2)].add(int(match.group(1)))
    common = sorted(set.intersection(*stages.values())) if stages else []
    columns = [
        *GROUP,
        "cell",
        "seed",
        "stages",
        *(f"{p}_{m}" for m in metrics for p in ("stage1", "stageT", "gain")),
    ]
    rows = []
    for _, run in runs.iterrows():
        logged = [t for t in common if all(pd.notna(run[f"test_stage{t}_{m}"]) for m in metrics)]
        if 1 not in logged or max(logged) == 1:
            continue
        last = max(logged)
        row = {key: run[key] for key in (*GROUP, "cell", "seed")} | {"stages": last}
        for m in metrics:
            first_value, last_value = float(run[f"test_stage1_{m}"]), float(run[f"test_stage{last}_{m}"])
            row |= {
                f"stage1_{m}": first_value,
                f"stageT_{m}": last_value,
                f"gain_{m}": last_value - first_value,
            }
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def summarise_stages(stages: pd.DataFrame, metrics: Sequence[str] = tuple(STAGE_METRICS)) -> pd.DataFrame:
    """Mean, std and 95 % interval over seeds of :func:`stage_table`'s columns per method x noise x
    init x stages: the ``gain_<m>`` interval is the paired one (stage T against stage 1)."""
    values = [f"{p}_{m}" for m in metrics for p in ("stage1", "stageT", "gain")]
    return summarise_seeds(stages, [*GROUP, "stages"], values)


def stage_figures(stage_summary: pd.DataFrame) -> dict[str, Figure]:
    """``{nme,pck}_stages``: each multi-stage method's stage T minus stage 1, paired by seed."""
    out = {}
    for name, metric in (("nme", "nme"), ("pck", "pck_0.2")):
        gains = stage_summary.rename(columns=lambda c, m=metric: c.replace(f"gain_{m}_", f"{m}_"))
        out[f"{name}_stages"] = plots.plot_paired_changes(
            gains,
            metric,
            "stage 1",
            title=f"test {metric}: last stage minus stage 1, paired by seed",
            empty="no model with more than one stage",
        )
    return out


def stage_refinement(stage_summary: pd.DataFrame, metrics: Mapping[str, bool] = STAGE_METRICS) -> list[str]:
    """Markdown lines: per noise x init, each multi-stage method's stage 1 and stage T and the change
    between them, paired by seed (:func:`summarise_stages`), and where that change is beyond its interval."""
    if stage_summary.empty:
        return []
    lines = ["", "## Stage refinement: the last stage against stage 1, paired by seed", ""]
    lines.append(
        "Each cell's test metric at its model's last stage T minus the same run's at stage 1 (one model, "
        "the same test crops), then mean ± std [95 % interval] over seeds. A model's stages are said to "
        "refine (or to lose) only where that interval excludes 0."
    )
    header = "| method | stages | seeds | " + " | ".join(
        f"stage 1 {m} | stage T {m} | change {m}" for m in metrics
    )
    rule = "|---|---|---|" + "---|---|---|" * len(metrics)
    for (noise, init), group in stage_summary.groupby(["noise", "init"], sort=False):
        lines += ["", f"### Training labels `{noise}`, init `{init}`", "", header + " |", rule]
        claims = []
        for _, row in group.iterrows():
            values = [
                f"{row[f'stage1_{m}_mean']:.4f} | {row[f'stageT_{m}_mean']:.4f} | "
                + _cell(row, f"gain_{m}", signed=True)
                for m in metrics
            ]
            lines.append(f"| {row['method']} | {row['stages']} | {row['n_seeds']} | {' | '.join(values)} |")
            claims += _stage_claims(row, metrics)
        lines += ["", *claims] if claims else ["", "- No stage change beyond its paired interval."]
    return lines


def _beyond_zero(row: pd.Series, column: str, higher: bool) -> tuple[bool, float, float] | None:
    """``(better, low, high)`` of a paired difference whose 95 % interval excludes 0, else None."""
    low, high = row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    if not (np.isfinite(low) and (low > 0 or high < 0)):
        return None
    return ((low > 0) if higher else (high < 0)), low, high


def _stage_claims(row: pd.Series, metrics: Mapping[str, bool]) -> list[str]:
    claims = []
    for metric, higher in metrics.items():
        if (beyond := _beyond_zero(row, f"gain_{metric}", higher)) is None:
            continue
        better, low, high = beyond
        claims.append(
            f"- {row['method']}: stage {row['stages']} {'better' if better else 'worse'} than stage 1 on "
            f"{metric} by {abs(row[f'gain_{metric}_mean']):.4f} [{low:+.4f}, {high:+.4f}] "
            f"({row[f'gain_{metric}_n']} seeds paired"
            f"{zero_width_note(['the change'] if zero_width(low, high) else [])})."
        )
    return claims


def _changes_from_baseline(table: pd.DataFrame, metrics: Sequence[str]) -> tuple[str, pd.DataFrame]:
    """The baseline level (``clean`` when there is one, else the first) and each cell group's change
    from it, paired by seed (:func:`~..evaluation.statistics.paired_changes`)."""
    levels = list(dict.fromkeys(table["noise"]))
    baseline = "clean" if "clean" in levels else levels[0]
    return baseline, paired_changes(table, ["method", "init"], "noise", baseline, list(metrics))


def changes_from_scratch(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Each method x noise level's ``pretrained`` cells minus its ``scratch`` cells of the same seed
    (:func:`~..evaluation.statistics.paired_changes`; ``init`` is ``pretrained`` in every row). A seed
    fixes the heads' initial weights, the sample order, the augmentation and the corrupted labels, so
    the pair differs in the backbone's initial weights alone. Groups without such a pair are left out."""
    changes = paired_changes(table, ["method", "noise"], "init", "scratch", list(metrics))
    return changes[(changes["init"] == "pretrained") & (changes["n_seeds"] > 0)].reset_index(drop=True)


def _cell(row: pd.Series, metric: str, signed: bool = False) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    n, seeds = int(row[f"{metric}_n"]), int(row["n_seeds"])
    if not np.isfinite(mean):
        return "- (no finite value)"
    lost = f" ({seeds - n} of {seeds} seeds not finite)" if n < seeds else ""
    sign = "+" if signed else ""
    if not np.isfinite(std):
        return f"{mean:{sign}.4f} (1 seed){lost}"
    return f"{mean:{sign}.4f} ± {std:.4f} [{low:{sign}.4f}, {high:{sign}.4f}]{lost}"


def robustness(table: pd.DataFrame, metrics: Mapping[str, bool]) -> list[str]:
    """Markdown lines: each method's change from the first noise level (``clean`` when there is one),
    paired by seed (:func:`~..evaluation.statistics.paired_changes`), where that change is beyond its
    interval, and which methods are more robust than others: the difference of two methods' changes,
    paired by seed as well (:func:`~..evaluation.statistics.paired_contrasts`)."""
    baseline, changes = _changes_from_baseline(table, list(metrics))
    contrasts = paired_contrasts(table, ["init"], "noise", baseline, "method", list(metrics))
    lines = ["", f"## Robustness: the change from `{baseline}` training labels, paired by seed", ""]
    lines.append(
        "Each cell minus the same method's, init's and seed's cell on "
        f"`{baseline}` labels (same initial weights, sample order and augmentation), then mean ± std "
        "[95 % interval] over seeds. Then each pair of methods: the first one's change minus the "
        "second one's, seed by seed (every method of a seed saw the same corrupted labels); one method "
        "is called more robust than another only where that interval excludes 0. Each interval is a "
        "95 % one on its own, with no correction for the number of pairs and metrics: among many, a few "
        "claims are expected by chance, so weigh a claim that one metric alone makes accordingly."
    )
    header = "| method | labels | seeds | " + " | ".join(metrics) + " |"
    rule = "|---|---|---|" + "---|" * len(metrics)
    for (init, noise), group in changes.groupby(["init", "noise"], sort=False):
        lines += ["", f"### `{noise}` - `{baseline}`, init `{init}`", "", header, rule]
        for _, row in group.iterrows():
            values = " | ".join(_cell(row, m, signed=True) for m in metrics)
            lines.append(f"| {row['method']} | {noise} | {row['n_seeds']} | {values} |")
        changed = [claim for _, row in group.iterrows() for claim in _change_claims(row, metrics)]
        lines += ["", *changed] if changed else []
        pairs = contrasts[(contrasts["init"] == init) & (contrasts["noise"] == noise)]
        if pairs.empty:  # one method under these conditions: nothing to set it against
            continue
        lines += ["", "Change of the first method minus change of the second, paired by seed:", ""]
        lines += ["| methods | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        for _, row in pairs.iterrows():
            values = " | ".join(_cell(row, m, signed=True) for m in metrics)
            lines.append(f"| {row['method_a']} - {row['method_b']} | {row['n_seeds']} | {values} |")
        lines.append("")
        claims = [claim for _, row in pairs.iterrows() for claim in _contrast_claims(row, metrics)]
        lines += claims or ["- No method is more robust than another beyond the paired intervals."]
    return lines


def pretraining(table: pd.DataFrame, metrics: Mapping[str, bool]) -> list[str]:
    """Markdown lines: each method's change from a scratch backbone to the pretrained one per noise
    level, paired by seed (:func:`changes_from_scratch`), and where it is beyond its interval; no lines
    without such pairs."""
    changes = changes_from_scratch(table, list(metrics))
    if changes.empty:
        return []
    lines = ["", "## Pretrained backbone: the change from a scratch backbone, paired by seed", ""]
    lines.append(
        "Each `pretrained` cell minus the same method's, labels' and seed's `scratch` cell (the same "
        "heads' initial weights, sample order, augmentation and corrupted labels: only the backbone's "
        "initial weights differ), then mean ± std [95 % interval] over the seeds that have both. "
        "Pretraining is said to help (or to hurt) only where that interval excludes 0."
    )
    header = "| method | labels | seeds | " + " | ".join(metrics) + " |"
    lines += ["", header, "|---|---|---|" + "---|" * len(metrics)]
    claims = []
    for _, row in changes.iterrows():
        values = " | ".join(_cell(row, m, signed=True) for m in metrics)
        lines.append(f"| {row['method']} | {row['noise']} | {row['n_seeds']} | {values} |")
        claims += _change_claims(
            row, metrics, subject=f"{row['method']}, `{row['noise']}` labels, pretrained"
        )
    return [*lines, "", *(claims or ["- No change from pretraining beyond its paired interval."])]


def _change_claims(row: pd.Series, metrics: Mapping[str, bool], subject: str | None = None) -> list[str]:
    """The sentences of one paired change (of ``subject``, by default the row's method): where its
    interval excludes 0."""
    claims = []
    for metric, higher in metrics.items():
        if (beyond := _beyond_zero(row, metric, higher)) is None:
            continue
        better, low, high = beyond
        claims.append(
            f"- {subject or row['method']}: {metric} {'better' if better else 'worse'} by "
            f"{abs(row[f'{metric}_mean']):.4f} [{low:+.4f}, {high:+.4f}] ({row[f'{metric}_n']} seeds paired"
            f"{zero_width_note(['the change'] if zero_width(low, high) else [])})."
        )
    return claims


def _contrast_claims(row: pd.Series, metrics: Mapping[str, bool]) -> list[str]:
    """The sentences of one pair of methods: where the interval of their changes' difference excludes 0."""
    claims = []
    for metric, higher in metrics.items():
        if (beyond := _beyond_zero(row, metric, higher)) is None:
            continue
        a_better, low, high = beyond
        mean = row[f"{metric}_mean"]
        winner, loser = (row["method_a"], row["method_b"]) if a_better else (row["method_b"], row["method_a"])
        sign = 1 if a_better else -1  # the sentence reads winner minus loser
        low, high = sorted((sign * low, sign * high))
        claims.append(
            f"- {winner} is more robust to `{row['noise']}` than {loser} on {metric}: {winner}'s change "
            f"minus {loser}'s {sign * mean:+.4f} [{low:+.4f}, {high:+.4f}] ({row[f'{metric}_n']} seeds paired"
            f"{zero_width_note(['the difference'] if zero_width(low, high) else [])})."
        )
    return claims


FAMILY_LEVEL = 0.05  # family-wise error rate of Holm's correction over a verdict's comparisons


def _stats(row: Mapping, metric: str) -> tuple[float, float, int]:
    return float(row[f"{metric}_mean"]), float(row[f"{metric}_std"]), int(row[f"{metric}_n"])


def comparisons(
    summary: pd.DataFrame,
    table: pd.DataFrame,
    metrics: Mapping[str, bool],
    stage_summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every comparison the verdict makes, one row each, with its p-value and Holm's adjusted one.

    The family: each pair of methods per noise x init and metric (Welch's t-test beside the rule that
    the two intervals do not overlap), each paired change from the baseline labels and from a scratch
    backbone, each pair of methods' changes, each stage gain (paired t-tests, whose p is below 5 %
    exactly when the paired interval excludes 0). ``claimed`` is the verdict's own rule; ``survives``
    adds Holm's correction at family-wise level :data:`FAMILY_LEVEL` over all of them.

    Returns:
        Columns ``kind``, ``what``, ``metric``, ``p``, ``claimed``, ``holm_p``, ``survives``.
    """
    rows: list[dict] = []
    for (noise, init), group in summary.groupby(["noise", "init"], sort=False):
        records = group.to_dict("records")
        for metric in metrics:
            for i, a in enumerate(records):
                for b in records[i + 1 :]:
                    low_a, high_a = a[f"{metric}_ci_low"], a[f"{metric}_ci_high"]
                    low_b, high_b = b[f"{metric}_ci_low"], b[f"{metric}_ci_high"]
                    rows.append(
                        {
                            "kind": "order",
                            "what": f"{a['method']} vs {b['method']}, `{noise}` labels, init `{init}`",
                            "metric": metric,
                            "p": welch_p_value(_stats(a, metric), _stats(b, metric)),
                            "claimed": bool(low_a > high_b or low_b > high_a),
                        }
                    )

    def paired(kind: str, what: str, row: Mapping, column: str, metric: str) -> None:
        rows.append(
            {
                "kind": kind,
                "what": what,
                "metric": metric,
                "p": paired_p_value(*_stats(row, column)),
                "claimed": _beyond_zero(pd.Series(row), column, True) is not None,
            }
        )

    if summary["noise"].nunique() > 1:
        baseline, changes = _changes_from_baseline(table, list(metrics))
        contrasts = paired_contrasts(table, ["init"], "noise", baseline, "method", list(metrics))
        for row in changes.to_dict("records"):
            for metric in metrics:
                what = f"{row['method']}: `{row['noise']}` - `{baseline}`, init `{row['init']}`"
                paired("noise change", what, row, metric, metric)
        for row in contrasts.to_dict("records"):
            for metric in metrics:
                what = (
                    f"{row['method_a']} - {row['method_b']}: change to `{row['noise']}`, init `{row['init']}`"
                )
                paired("robustness", what, row, metric, metric)
    for row in changes_from_scratch(table, list(metrics)).to_dict("records"):
        for metric in metrics:
            paired(
                "pretraining",
                f"{row['method']}: pretrained - scratch, `{row['noise']}` labels",
                row,
                metric,
                metric,
            )
    if stage_summary is not None:
        for row in stage_summary.to_dict("records"):
            for metric in STAGE_METRICS:
                what = f"{row['method']}: stage {row['stages']} - stage 1, `{row['noise']}`"
                what += f", init `{row['init']}`"
                paired("stage gain", what, row, f"gain_{metric}", metric)
    family = pd.DataFrame(rows, columns=["kind", "what", "metric", "p", "claimed"])
    family["holm_p"] = holm(family["p"].to_numpy()) if len(family) else []
    family["survives"] = family["claimed"] & (family["holm_p"] < FAMILY_LEVEL)
    return family


def holm_section(family: pd.DataFrame) -> list[str]:
    """Markdown lines: how many comparisons the verdict made and which of its claims survive Holm."""
    tested = family[family["p"].notna()]
    claimed = tested[tested["claimed"]]
    kinds = ", ".join(f"{n} {kind}" for kind, n in tested["kind"].value_counts(sort=False).items())
    lines = [
        "",
        "## Many comparisons: Holm's correction",
        "",
        f"The verdict makes {len(tested)} comparisons ({kinds})"
        f" and claims {len(claimed)} of them, each on a 95 % interval of its own. With Holm's correction"
        f" over all {len(tested)} (family-wise error {FAMILY_LEVEL:.0%}; p from Welch's t-test for two"
        " methods' seeds, a paired t-test for a paired change), "
        f"{int(claimed['survives'].sum())} of the {len(claimed)} claims survive.",
    ]
    if len(claimed):
        lines += ["", "| claim | metric | p | Holm p | survives |", "|---|---|---|---|---|"]
        for row in claimed.sort_values("holm_p", kind="stable").to_dict("records"):
            lines.append(
                f"| {row['kind']}: {row['what']} | {row['metric']} | {row['p']:.2g} | {row['holm_p']:.2g} "
                f"| {'yes' if row['survives'] else 'no'} |"
            )
    return lines


def verdict(
    comparison: str,
    dataset: str,
    summary: pd.DataFrame,
    metrics: Mapping[str, bool],
    planned: pd.DataFrame,
    table: pd.DataFrame,
    stage_summary: pd.DataFrame | None = None,
    differences: pd.DataFrame | None = None,
) -> str:
    """The markdown verdict: completeness, one table per noise x init, and the order claims.

    Args:
        summary: :func:`summarise` output.
        metrics: ``{metric: higher_is_better}``.
        planned: the planned cells (``cell`` column; ``status``/``error`` when the grid ran them).
        table: :func:`cell_table` (the finished cells).
        stage_summary: :func:`summarise_stages` output, for the stage-refinement section.
        differences: :func:`crop_differences` output, for the section over seeds and test crops
            (with :func:`with_crop_intervals`'s columns in ``summary``).
    """
    lines = [f"# Comparison `{comparison}` ({dataset})", ""]
    done = set(table["cell"])
    missing = planned[~planned["cell"].isin(done)]
    lines.append(
        f"{len(done & set(planned['cell']))} of {len(planned)} planned cells have a finished run in MLflow "
        f"(tag `comparison = {comparison}`); seeds per group: "
        f"{', '.join(sorted({str(n) for n in summary['n_seeds']})) if len(summary) else 'none'}."
    )
    machines = sorted({str(m) for m in table["machine"].dropna()})
    untagged = int(table["machine"].isna().sum())
    before_tags = f" ({untagged} run(s) predate the machine tags)" if untagged and machines else ""
    if len(machines) > 1:
        lines.append(
            f"The runs come from {len(machines)} kinds of machine ({'; '.join(machines)}){before_tags}; a "
            "run repeated on another kind gives other numbers (CPU kernels round differently per CPU)."
        )
    elif machines:
        lines.append(f"All tagged runs on one kind of machine: {machines[0]}{before_tags}.")
    extra = done - set(planned["cell"])
    if extra:
        lines.append(f"Also reported: {len(extra)} finished cell(s) not in the current plan.")
    if len(missing):
        lines += ["", "Missing cells (not claimed about):", ""]
        for row in missing.to_dict("records"):
            failed = row.get("status") == "failed"
            reason = f"failed: {row.get('error')}" if failed else "no finished run"
            lines.append(f"- `{row['cell']}`: {reason}")
    header = "| method | seeds | " + " | ".join(metrics) + " |"
    rule = "|---|---|" + "---|" * len(metrics)
    for (noise, init), group in summary.groupby(["noise", "init"], sort=False):
        lines += ["", f"## Training labels `{noise}`, init `{init}`", "", header, rule]
        for _, row in group.iterrows():
            values = " | ".join(_cell(row, m) for m in metrics)
            lines.append(f"| {row['method']} | {row['n_seeds']} | {values} |")
        lines += ["", "Mean ± standard deviation over seeds [95 % Student-t interval of the mean].", ""]
        without_resnet = sorted(set(summary["method"]) - set(group["method"]) - set(RESNET_METHODS))
        if init == "pretrained" and without_resnet:
            lines.append(
                f"- {', '.join(without_resnet)}: no pretrained cells (no ResNet for the backbone; they would "
                "repeat the scratch cells): see init `scratch`."
            )
        claims = [c for m, higher in metrics.items() for c in order_claims(group, m, higher, by="method")]
        lines += [f"- {c}" for c in claims] or [
            "- No order between methods is claimed: every interval overlaps."
        ]
    if differences is not None:
        lines += crop_section(summary, differences, metrics)
    if summary["noise"].nunique() > 1:
        lines += robustness(table, metrics)
    lines += pretraining(table, metrics)
    if stage_summary is not None:
        lines += stage_refinement(stage_summary)
    lines += holm_section(comparisons(summary, table, metrics, stage_summary))
    lines += [
        "",
        "An order is claimed only where the two 95 % intervals do not overlap, a difference in "
        "robustness only where its paired 95 % interval excludes 0; anything else is within the "
        "seed-to-seed variation measured here.",
        "",
    ]
    return "\n".join(lines)
