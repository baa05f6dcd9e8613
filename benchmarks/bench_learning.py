"""How fast does a configuration learn? Validation PCK@0.2 against wall-clock seconds, and its scores.

Trains with the training node's own function (``training.runs.train_method``, as
``kedro run --pipelines=train_rhd`` does, with the parameters of conf/base/parameters_train.yml) on
the preprocessed crops of ``kedro run --pipelines=rhd_preprocess``, records every epoch's validation
PCK@0.2 with the seconds since training started, and scores the best checkpoint's stage-T prediction
on the VALIDATION split before and after training (the evaluation's metrics, per fingertip, and the
shrinkage diagnostics ``centre_slope`` / ``hand_spread``). Variants are chosen on these; the test
split is read only with ``--read-test``, once a choice is made. Variants are the default plus
``key=value`` changes, so settings are compared on equal terms, in one run:

    python benchmarks/bench_learning.py                                    # the default (CPU demo)
    python benchmarks/bench_learning.py --set train.sigma_warmup_epochs=0  # one variant
    python benchmarks/bench_learning.py --variant integral:model.method=integral \\
        --variant wide:model.head_channels=128,train.lr=2e-3                # several, one file
    python benchmarks/bench_learning.py --suite demo        # the 0.1.0-0.3.0 and current demos, every method
    python benchmarks/bench_learning.py --quick --hands H.parquet --crops DIR
    python benchmarks/bench_learning.py --read-test --name chosen --set ...  # the chosen one, on test

The result goes to ``benchmarks/results/learning_<name>.json`` (per variant: parameters, history with
``elapsed_s``, the scored rows) and, for more than one variant, ``learning_<name>.png``: validation PCK@0.2
against seconds, one line per variant.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.evaluation.report import evaluate_predictions
from mle_hand_pipeline.keypoints import FINGER_KEYPOINTS
from mle_hand_pipeline.training.checkpoint import ModelSpec, load_model
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.inference import map_diagnostics, predict_crops, score_crops
from mle_hand_pipeline.training.runs import split, train_method
from mle_hand_pipeline.training.validation import ParameterError, validate_model_params, validate_train_params

PARAMETERS = _common.REPO / "conf/base/parameters_train.yml"

# Earlier CPU demos, run on the data given with the number of training images they saw (their epochs x
# their training crops) and their lr drop and sigma warm-up at the same shares of it, so every variant
# of the suite trains on the same crops. On the data they were measured on they are themselves.
# Until 0.3.0 the demo trained the paper's plain soft-argmax: no heatmap prior, no decoding window.
PLAIN_SOFT_ARGMAX = {"model.decode_window": 0, "model.loss.heatmap_prior": 0.0}
# 0.1.0: the whole ResNet-18 (2x2 features at 64 px), batch 32, augmentation on, 60 epochs of 562 crops.
OLD_DEMO = {
    **PLAIN_SOFT_ARGMAX,
    "model.backbone_stride": 32,
    "model.stages": 5,
    "model.input_size": 64,
    "model.head_channels": 64,
    "train.lr": 1.0e-3,
    "train.batch_size": 32,
    "train.augment": {
        "rotation": 30.0,
        "rotation_prob": 1.0,
        "scale": [0.85, 1.15],
        "shift": 0.08,
        "flip_prob": 0.5,
        "brightness": 0.3,
        "contrast": 0.3,
        "saturation": 0.3,
    },
}
OLD_DEMO_SCHEDULE = {"epochs": 60, "crops": 562, "lr_milestone": 50, "sigma_warmup_epochs": 30}
# 0.2.0: the stride-8 ResNet-18 with 5 stages, 12 epochs of 2255 crops (1600 synthetic images).
DEMO_0_2_0 = {**PLAIN_SOFT_ARGMAX, "model.stages": 5}
DEMO_0_2_0_SCHEDULE = {"epochs": 12, "crops": 2255, "lr_milestone": 10, "sigma_warmup_epochs": 4}


def same_images(schedule: dict[str, int], train_crops: int) -> dict[str, Any]:
    """``schedule`` (a demo's epochs of its crops) on ``train_crops`` crops: the same number of training
    images, the lr drop and the sigma warm-up at the same shares of it (Python's rounding)."""
    epochs = max(1, round(schedule["epochs"] * schedule["crops"] / train_crops))
    share = epochs / schedule["epochs"]
    return {
        "train.epochs": epochs,
        "train.lr_milestones": [max(1, round(schedule["lr_milestone"] * share))],
        "train.sigma_warmup_epochs": round(schedule["sigma_warmup_epochs"] * share),
    }


def training_crops(hands_path: Path) -> int:
    return int((pd.read_parquet(hands_path, columns=["split"])["split"] == "train").sum())


def suites(train_crops: int) -> dict[str, dict[str, dict[str, Any]]]:
    """The named variant sets on a hand table with ``train_crops`` training crops."""
    return {
        "demo": {
            "0.1.0 demo (mle, stride 32)": {**OLD_DEMO, **same_images(OLD_DEMO_SCHEDULE, train_crops)},
            "0.2.0 demo (mle, 5 stages)": {**DEMO_0_2_0, **same_images(DEMO_0_2_0_SCHEDULE, train_crops)},
            "0.3.0 demo (mle, plain soft-argmax)": PLAIN_SOFT_ARGMAX,
            "demo (mle)": {},
            **{
                f"demo ({method})": {"model.method": method}
                for method in ("integral", "heatmap_l2", "rle", "cpm")
            },
        }
    }


def set_value(block: dict, dotted: str, value: Any) -> None:
    """``block["a"]["b"] = value`` for ``dotted == "a.b"``."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        block = block.setdefault(key, {})
    block[leaf] = value


def parse_assignments(texts: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[2, 3]"]`` -> ``{"a.b": 1, "c": [2, 3]}`` (values parsed as YAML)."""
    changes = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep:
            sys.exit(f"{text!r}: expected KEY=VALUE")
        changes[key] = yaml.safe_load(value)
    return changes


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:a.b=1,c=2"`` -> ``("name", {"a.b": 1, "c": 2})``; a list value needs no commas: ``[1 2]``
    is not YAML, so lists are written ``c=[1;2]``."""
    name, _, assignments = text.partition(":")
    parts = [a.replace(";", ",") for a in assignments.split(",") if a]
    return name, parse_assignments(parts)


# The evaluation's metrics a variant's row keeps (the final stage's, and the shrinkage per stage).
ROW_METRICS = ("nme", "pck_0.05", "pck_0.1", "pck_0.2", "auc_0.2", "centre_slope", "hand_spread")
# the validation figures variants are ranked by (first) and shown beside the scored split's
RANKED_BY = ("pck_0.2", "nme")


def scores(model, table: pd.DataFrame, crops_dir: Path, input_size: int) -> dict[str, float]:
    """The evaluation's metrics of ``model`` on ``table``'s crops (stage T, and the stages'
    ``centre_slope`` / ``hand_spread``) and PCK@0.2 of each fingertip."""
    crops = HandCrops(table, crops_dir)
    predictions = predict_crops(model, crops, input_size, torch.device("cpu"), progress=False)
    report = evaluate_predictions(table, predictions.coords, predictions.sigmas)
    kept = [k for k in report.metrics if k in ROW_METRICS or k.endswith(("_slope", "_spread"))]
    row = {k: float(report.metrics[k]) for k in kept}
    per_keypoint = report.per_keypoint["pck_0.2"]
    row.update(
        {f"pck_0.2_{name}_tip": float(per_keypoint[chain[-1]]) for name, chain in FINGER_KEYPOINTS.items()}
    )
    row.update(map_rows(model, table, crops, input_size))
    return row


def map_rows(model, table: pd.DataFrame, crops: HandCrops, input_size: int) -> dict[str, float]:
    """For a model with heatmaps: its maps decoded by argmax and by soft-argmax around the argmax
    (the evaluation's metrics, prefixes ``argmax_``, ``local1_``, ``local2_``) and, per stage, the
    mean max cell probability and entropy of their softmax over visible keypoints
    (``stage{t}_max_prob``, ``stage{t}_entropy``)."""
    try:
        maps = map_diagnostics(model, crops, input_size, torch.device("cpu"))
    except ValueError:  # no heatmaps (rle)
        return {}
    decoded = {"argmax": maps.argmax_coords, **{f"local{r}": c for r, c in maps.local_coords.items()}}
    row = {}
    for decoder, coords in decoded.items():
        metrics = evaluate_predictions(table, coords).metrics
        row.update({f"{decoder}_{k}": float(v) for k, v in metrics.items() if k in ROW_METRICS})
    visible = crops.visible.numpy().astype(bool)
    for t in range(maps.max_prob.shape[1]):
        row[f"stage{t + 1}_max_prob"] = float(maps.max_prob[:, t][visible].mean())
        row[f"stage{t + 1}_entropy"] = float(maps.entropy[:, t][visible].mean())
    return row


def variant_parameters(changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The CPU demo's ``model`` and ``train`` blocks with ``changes`` applied, checked as a run checks
    them (``ParameterError``), so a mistyped value stops the benchmark before any variant trains."""
    params = yaml.safe_load(PARAMETERS.read_text())
    block = {"model": dict(params["_model_cpu"]), "train": dict(params["_train_cpu"])}
    for key, value in changes.items():
        set_value(block, key, value)
    validate_model_params(block["model"])
    validate_train_params(block["train"])
    return block


def run_variant(
    name: str, block: dict[str, dict[str, Any]], hands: pd.DataFrame, crops_dir: Path, split_name: str = "val"
) -> dict[str, Any]:
    """Train one variant; its rows score the untrained and the best-validation model on ``split_name``."""
    spec = ModelSpec.from_params(block["model"])
    scored = split(hands, split_name)
    torch.manual_seed(block["train"]["seed"])  # the trainer's initial weights
    untrained = score_crops(
        spec.build_model(), HandCrops(scored, crops_dir), spec.input_size, torch.device("cpu")
    )
    start = time.perf_counter()
    elapsed: list[float] = []
    with tempfile.TemporaryDirectory() as checkpoints:
        history, report = train_method(
            hands,
            crops_dir,
            Path(checkpoints),
            block["model"],
            block["train"],
            on_epoch_end=lambda row: elapsed.append(time.perf_counter() - start),
        )
        wall = time.perf_counter() - start
        model = load_model(report["best_checkpoint"])[0]
        trained = scores(model, scored, crops_dir, spec.input_size)
        # the figures a choice between variants reads, beside the test figures when test is read
        validation = (
            trained if split_name == "val" else scores(model, split(hands, "val"), crops_dir, spec.input_size)
        )
        # the training crops (unaugmented): far above the scored split = overfitting, not slow learning
        train = HandCrops(split(hands, "train"), crops_dir)
        trained["train_pck_0.2"] = score_crops(model, train, spec.input_size, torch.device("cpu"))["pck_0.2"]
    history = history.assign(elapsed_s=elapsed)
    print(_common.table([{"variant": name, "train_wall_s": wall, **trained}]))
    return {
        "name": name,
        "parameters": block,
        "train_wall_s": wall,
        "best_epoch": report["best_epoch"],
        "split": split_name,
        "rows": [{"model": "untrained", **untrained}, {"model": "trained (best val)", **trained}],
        "validation": validation,
        "history": history.to_dict(orient="records"),
    }


def plot(variants: list[dict[str, Any]], title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for variant in variants:
        history = pd.DataFrame(variant["history"])
        final = variant["rows"][-1]["pck_0.2"]
        label = f"{variant['name']} ({variant.get('split', 'test')} {final:.2f})"
        axes.plot(history["elapsed_s"], history["val_pck_0.2"], label=label)
    axes.set(xlabel="training seconds (wall clock)", ylabel="validation PCK@0.2", title=title, ylim=(0, 1))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--hands", type=Path, default=_common.REPO / "data/03_primary/rhd_hands.parquet")
    p.add_argument("--crops", type=Path, default=_common.REPO / "data/02_intermediate/rhd_crops")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.epochs=5")
    p.add_argument(
        "--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...", help="one more variant"
    )
    p.add_argument(
        "--suite", choices=sorted(suites(1)), help="a named set of variants (demo: old, new, methods)"
    )
    p.add_argument(
        "--name", default=None, help="result name (default: 'default', the suite or the --set values)"
    )
    p.add_argument(
        "--read-test",
        action="store_true",
        help="score on the test split, not validation: once, for a variant already chosen on validation",
    )
    args = p.parse_args()
    if not args.hands.is_file():
        sys.exit(f"{args.hands} not found: run `kedro run --pipelines=synthetic_data` and `rhd_preprocess`")

    common = parse_assignments(args.set)
    if args.quick:
        common = {
            "model.stages": 2,
            "model.head_channels": 8,
            "train.epochs": 2,
            "train.sigma_warmup_epochs": 1,
            "train.batch_size": 8,
            "train.num_workers": 0,
            **common,
        }
    variants = dict(suites(training_crops(args.hands))[args.suite]) if args.suite else {}
    variants.update(parse_variant(text) for text in args.variant)
    if not variants:
        variants = {"default": {}}
    name = args.name or args.suite or ("default" if not args.set or args.quick else "_".join(args.set))
    name = name.replace("=", "-")

    # --quick keeps its tiny sizes over a suite's settings (it proves the script runs, nothing more)
    changes = {
        variant: {**own, **common} if args.quick else {**common, **own} for variant, own in variants.items()
    }
    try:
        blocks = {variant: variant_parameters(own) for variant, own in changes.items()}
    except ParameterError as error:
        sys.exit(f"{error}\n(a --set or --variant value; numbers need a dot before the exponent: 2.0e-3)")
    hands = pd.read_parquet(args.hands)
    load_before = _common.loadavg()
    results = []
    split_name = "test" if args.read_test else "val"
    payload = {
        "train_crops": int((hands["split"] == "train").sum()),
        "split": split_name,
        f"{split_name}_crops": int((hands["split"] == split_name).sum()),
        "variants": results,
    }
    for variant in variants:
        results.append(
            {
                **run_variant(variant, blocks[variant], hands, args.crops, split_name),
                "changes": changes[variant],
            }
        )
        # after every variant: a later one that fails or is stopped loses none of those before it
        path = _common.save(f"learning_{name}", args.out, payload, load_before, args.quick)
    if len(results) > 1:
        figure = plot(results, f"learning speed: {name} ({_common.machine()['cpu']})")
        figure.savefig(path.with_suffix(".png"), dpi=110)
    rows = [
        {
            "variant": r["name"],
            "train_wall_s": r["train_wall_s"],
            **{f"val_{k}": r["validation"][k] for k in RANKED_BY},
            **r["rows"][-1],
        }
        for r in results
    ]
    rows.sort(key=lambda row: -row[f"val_{RANKED_BY[0]}"])  # ranked on validation, whatever split is shown
    _common.report(f"learning ({name}, {split_name} split; ranked by validation)", rows, path, load_before)


if __name__ == "__main__":
    main()
