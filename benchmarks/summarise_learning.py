"""Seed statistics of ``bench_learning.py`` results: one group per configuration, its seeds pooled.

Variants of one or several result files that differ only in ``train.seed`` form a group, named by
how its ``model`` and ``train`` blocks differ from the current CPU demo's (conf/base), e.g.
``model.method=heatmap_l2``, or ``default``, so files made under an earlier default group right. Per group
and metric of the variants' scored rows (validation, unless the files were made with ``--read-test``):
mean, std and 95 % Student-t interval (``evaluation.statistics.summarise_seeds``), and, against the
``--baseline`` group, the interval of the per-seed differences (``paired_changes``: the same seed
gives both runs the same sample order):

    python benchmarks/summarise_learning.py benchmarks/results/learning_a.json learning_b.json \\
        --baseline model.method=heatmap_l2 --name prior_window

The summary goes to ``benchmarks/results/seeds_<name>.json`` with the files it read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.evaluation.statistics import paired_changes, summarise_seeds
from mle_hand_pipeline.training.validation import dotted_keys

METRICS = (
    "pck_0.2",
    "nme",
    "pck_0.05",
    "auc_0.2",
    "hand_spread",
    "centre_slope",
    *(f"pck_0.2_{finger}_tip" for finger in ("thumb", "index", "middle", "ring", "pinky")),
)


# Keys that result files from before an option existed lack: the value those runs used.
ABSENT_MEANS = {"model.decode_window": 0, "model.loss.heatmap_prior": 0.0}


def demo_parameters() -> dict[str, object]:
    """The current CPU demo's ``model`` and ``train`` blocks, flattened."""
    params = yaml.safe_load((_common.REPO / "conf/base/parameters_train.yml").read_text())
    return dotted_keys({"model": params["_model_cpu"], "train": params["_train_cpu"]})


def group_name(parameters: dict, demo: dict[str, object]) -> str:
    """How a variant's resolved blocks differ from ``demo``, without the seed: ``a=1,b=2`` or ``default``."""
    flat = {**ABSENT_MEANS, **dotted_keys(parameters)}
    keys = sorted((set(flat) | set(demo)) - {"train.seed"})
    changed = [key for key in keys if flat.get(key) != demo.get(key)]
    return ",".join(f"{key}={flat.get(key)}" for key in changed) or "default"


def runs_table(documents: list[dict]) -> pd.DataFrame:
    """One row per variant: its group, seed, scored split and the METRICS of its trained row."""
    rows = []
    demo = demo_parameters()
    for document in documents:
        for variant in document["variants"]:
            scored = variant["rows"][-1]
            rows.append(
                {
                    "group": group_name(variant["parameters"], demo),
                    "seed": variant["parameters"]["train"]["seed"],
                    "split": variant.get("split", "test"),
                    "variant": variant["name"],
                    **{metric: scored.get(metric, float("nan")) for metric in METRICS},
                }
            )
    runs = pd.DataFrame(rows)
    if runs.duplicated(["group", "seed"]).any():
        duplicates = runs[runs.duplicated(["group", "seed"], keep=False)]
        raise ValueError(
            f"two runs of one configuration and seed:\n{duplicates[['group', 'seed', 'variant']]}"
        )
    if runs["split"].nunique() > 1:
        raise ValueError(f"the files score different splits: {sorted(runs['split'].unique())}")
    return runs


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="bench_learning.py result files")
    p.add_argument("--baseline", default=None, help="the group the others are paired against")
    p.add_argument("--name", required=True, help="result name: seeds_<name>.json")
    args = p.parse_args()
    documents = [json.loads(path.read_text()) for path in args.files]
    runs = runs_table(documents)
    summary = summarise_seeds(runs, ["group"], METRICS)
    payload = {
        "files": [str(path) for path in args.files],
        "split": runs["split"].iloc[0],
        "runs": runs.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
    }
    if args.baseline:
        if args.baseline not in set(runs["group"]):
            sys.exit(f"--baseline {args.baseline!r} is none of the groups: {sorted(set(runs['group']))}")
        payload["paired_with"] = args.baseline
        payload["paired"] = paired_changes(
            runs.assign(all="all"), ["all"], "group", args.baseline, METRICS
        ).to_dict(orient="records")
    path = _common.save(f"seeds_{args.name}", args.out, payload, _common.loadavg(), args.quick)
    columns = [
        "group",
        "n_seeds",
        *(f"{m}_{s}" for m in ("pck_0.2", "nme") for s in ("mean", "ci_low", "ci_high")),
    ]
    print(_common.table(summary[columns].to_dict(orient="records")))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
