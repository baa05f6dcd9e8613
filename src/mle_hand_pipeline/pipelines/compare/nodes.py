"""Nodes of the compare pipelines: train and evaluate each method with the same settings.

Each method x label-noise level is its own MLflow run, nested in the pipeline's run (kedro-mlflow's
``compare_<dataset>`` run), with the metric names of a ``train_<dataset>`` run (per-epoch
``train_loss``/``val_nme``/..., ``test_*``, ``label_noise_*``) so MLflow's compare view lines them up.
The side-by-side table and the paper-style figures are artifacts of the parent run.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation import plots as P
from mle_hand_pipeline.evaluation.report import EvaluationReport
from mle_hand_pipeline.methods import METHODS
from mle_hand_pipeline.training.checkpoint import ModelSpec
from mle_hand_pipeline.training.engine import NonFiniteLossError
from mle_hand_pipeline.training.label_noise import LabelNoise
from mle_hand_pipeline.training.runs import evaluate_on_test, split, train_method

logger = logging.getLogger(__name__)

RUN_COLUMNS = ["run", "method", "noise", "noise_index", "fraction", "jitter_px", "outlier_fraction"]


def noise_name(level: dict[str, Any]) -> str:
    """A level's ``name``, else ``clean`` or e.g. ``j4f0.3o0.05`` (jitter px, fraction, outlier share)."""
    if level.get("name"):
        return str(level["name"])
    noise = LabelNoise.from_params({k: v for k, v in level.items() if k != "name"})
    if not noise.active:
        return "clean"
    return f"j{noise.jitter_px:g}f{noise.fraction:g}o{noise.outlier_fraction:g}"


def comparison_plan(
    model_params: dict[str, Any], train_params: dict[str, Any], compare_params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The runs of a comparison: the dataset's model/train params with only ``method`` changed, plus
    ``compare.loss_overrides[method]`` over ``model.loss`` (RLE's own residual form) and the label
    noise (one block per ``compare.noise_levels`` entry, over ``train.label_noise``)."""
    methods = compare_params.get("methods") or METHODS
    if isinstance(methods, str):  # "mle integral" or "mle+integral": `kedro run --params` splits on commas
        methods = methods.replace("+", " ").split()
    methods = list(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"compare.methods: unknown {unknown}; valid: {', '.join(METHODS)}")
    levels = compare_params.get("noise_levels") or [{}]
    base_noise = dict(train_params.get("label_noise") or {})
    loss_overrides = compare_params.get("loss_overrides") or {}
    plan, names = [], []
    for index, level in enumerate(levels):
        name = noise_name({**base_noise, **level})
        if name in names:
            raise ValueError(f"compare.noise_levels: two levels are named {name!r}; give them names")
        names.append(name)
        noise = {k: v for k, v in {**base_noise, **level}.items() if k != "name"}
        LabelNoise.from_params(noise)  # validate before hours of training
        for method in methods:
            plan.append(
                {
                    "method": method,
                    "noise": name,
                    "noise_index": index,
                    "model": {
                        **model_params,
                        "method": method,
                        "loss": {**(model_params.get("loss") or {}), **(loss_overrides.get(method) or {})},
                    },
                    "train": {**train_params, "label_noise": noise},
                }
            )
    return plan


def _flatten(params: dict[str, Any], prefix: str) -> dict[str, str]:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = str(value)
    return flat


@contextmanager
def _child_run(name: str, params: dict[str, str]):
    """A nested MLflow run when a parent is active, else nothing. Yields ``{"run": run or None,
    "status": "FINISHED"}``; the body may set ``status`` (an exception ends the run FAILED)."""
    state: dict[str, Any] = {"run": None, "status": "FAILED"}
    parent = mlflow.active_run()
    if not parent:
        yield state
        return
    state["run"] = mlflow.start_run(run_name=name, nested=True, experiment_id=parent.info.experiment_id)
    try:
        mlflow.log_params(params)
        state["status"] = "FINISHED"
        yield state
    except BaseException:
        state["status"] = "FAILED"
        raise
    finally:
        mlflow.end_run(state["status"])


def _log_child_artifacts(
    report: EvaluationReport, history: pd.DataFrame, crops_dir: Path, label: str
) -> None:
    """The files a ``train_<dataset>`` run has, logged to the active (child) run."""
    if not mlflow.active_run():
        return
    figures = P.evaluation_figures(
        report.predictions,
        report.per_keypoint,
        report.per_stage,
        report.pck_curve,
        report.calibration,
        crops_dir,
        label,
    )
    mlflow.log_text(history.to_csv(index=False), "training/train_history.csv")
    mlflow.log_figure(P.plot_training_curves(history), "training/training_curves.png")
    mlflow.log_dict(report.metrics, "evaluation/test_metrics.json")
    for name in ("per_keypoint", "per_stage", "pck_curve", "calibration"):
        mlflow.log_text(getattr(report, name).to_csv(index=False), f"evaluation/{name}.csv")
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"evaluation/{name}.png")


def compare_methods(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    model_params: dict[str, Any],
    train_params: dict[str, Any],
    evaluate_params: dict[str, Any],
    compare_params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every run of :func:`comparison_plan`, each in its own nested MLflow run.

    Checkpoints go to ``checkpoint_root/compare/<noise>/<method>/``. A method whose loss diverges
    (:class:`NonFiniteLossError`) is reported with status ``diverged`` and NaN metrics, and the
    comparison goes on.

    Returns:
        ``(table, curves, per_keypoint, per_stage)``: one row per run (settings, status, test
        metrics, training summary, MLflow run id), and the long PCK-curve, per-keypoint and per-stage
        tables (keyed by ``run``, ``method``, ``noise``).
    """
    dataset = str(hands["dataset"].iloc[0])
    split(hands, "test")  # fail before any training if there is no test split
    plan = comparison_plan(model_params, train_params, compare_params)
    rows, curves, per_keypoint, per_stage = [], [], [], []
    for number, item in enumerate(plan, start=1):
        run_name = f"{dataset}-{item['method']}-noise-{item['noise']}"
        noise = item["train"]["label_noise"]
        ids = {
            "run": run_name,
            "method": item["method"],
            "noise": item["noise"],
            "noise_index": item["noise_index"],
            **{k: float(noise.get(k, 0.0)) for k in ("fraction", "jitter_px", "outlier_fraction")},
        }
        params = {
            "method": item["method"],
            "noise": item["noise"],
            **_flatten(item["model"], f"{dataset}.model"),
            **_flatten(item["train"], f"{dataset}.train"),
            **_flatten(evaluate_params, f"{dataset}.evaluate"),
        }
        logger.info("comparison run %d/%d: %s", number, len(plan), run_name)
        with _child_run(run_name, params) as child:
            run = child["run"]
            row = {**ids, "status": "finished", "mlflow_run_id": run.info.run_id if run else None}
            try:
                history, training = train_method(
                    hands,
                    crops_dir,
                    Path(checkpoint_root) / "compare" / item["noise"],
                    item["model"],
                    item["train"],
                    on_epoch_end=tracking.active_epoch_logger(),
                    log_metrics=tracking.log_metrics,
                )
            except NonFiniteLossError as error:
                logger.warning("%s diverged: %s", run_name, error)
                tracking.log_dict({"status": "diverged", "error": str(error)}, "training/diverged.json")
                child["status"] = "FAILED"
                rows.append({**row, "status": "diverged"})
                continue
            checkpoint = training[f"{evaluate_params['checkpoint']}_checkpoint"]
            report = evaluate_on_test(hands, crops_dir, checkpoint, evaluate_params["batch_size"])
            tracking.log_metrics(report.metrics, prefix="test_")
            _log_child_artifacts(report, history, crops_dir, run_name)
            rows.append(
                {
                    **row,
                    **report.metrics,
                    "label_nme": training["label_noise"]["label_nme"],
                    "best_epoch": training["best_epoch"],
                    "epochs": training["epochs"],
                    "best_val_nme": training["best_val_nme"],
                    "train_wall_time_s": training["train_wall_time_s"],
                    "n_params": sum(
                        p.numel()
                        for p in ModelSpec.from_params(item["model"]).build_model(False).parameters()
                    ),
                    "checkpoint": checkpoint,
                }
            )
            curves.append(report.pck_curve.assign(**ids))
            per_keypoint.append(report.per_keypoint.assign(**ids))
            per_stage.append(report.per_stage.assign(**ids))
            logger.info(
                "%s: test NME %.4f  PCK@0.2 %.4f", run_name, report.metrics["nme"], report.metrics["pck_0.2"]
            )

    def long(frames: list[pd.DataFrame]) -> pd.DataFrame:
        if not frames:
            return pd.DataFrame(columns=RUN_COLUMNS)
        frame = pd.concat(frames, ignore_index=True)
        return frame[RUN_COLUMNS + [c for c in frame.columns if c not in RUN_COLUMNS]]

    table = pd.DataFrame(rows)
    return table, long(curves), long(per_keypoint), long(per_stage)


def plot_comparison(
    table: pd.DataFrame,
    curves: pd.DataFrame,
    per_keypoint: pd.DataFrame,
    per_stage: pd.DataFrame,
    compare_params: dict[str, Any],
) -> tuple[Figure, Figure, Figure, Figure]:
    """PCK curves of all methods, per-keypoint NME bars per method, per-stage PCK of the reference
    method (``compare.reference_method``, default mle) and NME/PCK against the label-noise level."""
    finished = table[table["status"] == "finished"]
    if finished.empty:
        raise ValueError("no comparison run finished: every method diverged (see the log)")
    figures = P.comparison_figures(
        finished, curves, per_keypoint, per_stage, compare_params.get("reference_method", "mle")
    )
    return (
        figures["pck_curves"],
        figures["per_keypoint_nme"],
        figures["per_stage_pck"],
        figures["noise_robustness"],
    )
