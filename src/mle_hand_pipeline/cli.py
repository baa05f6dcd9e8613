"""The ``mle-hand`` console script.

    mle-hand predict IMAGE... --model MODEL [--box x0,y0,x1,y1] [--backend torch|onnx] [--out DIR]
        [--precision fp32|bf16]
    mle-hand export-onnx --model CHECKPOINT --out model.onnx

Exit codes: 0 all images predicted; 1 some images failed (the others are still written); 2 bad
arguments or a model that cannot be loaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


class EndOfFileError(RuntimeError):
    """An ``EOFError`` raised inside ``kedro run`` (an empty or truncated file), re-raised as an error:
    click reads ``EOFError`` as Ctrl-D at a prompt and would end the run with only ``Aborted!``."""


def _without_abort(command: click.Command) -> click.Command:
    """``command`` with an ``EOFError`` from its callback re-raised as :class:`EndOfFileError`, so the
    traceback and the project's error summary (``hooks.ErrorSummary``) end the run, not ``Aborted!``.
    Ctrl-C still aborts (and ``hooks.MarkInterruptedRuns`` records the MLflow run as KILLED)."""
    callback = command.callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except EOFError as error:
            raise EndOfFileError(
                f"unexpected end of file ({error or 'EOFError'}): a file the run read is empty or truncated; "
                "the traceback above names where"
            ) from error

    return click.Command(
        name=command.name,
        params=command.params,
        callback=run,
        help=command.help,
        short_help=command.short_help,
        context_settings=command.context_settings,
    )


class _ProjectCommands(click.Group):
    """Kedro's project commands as this project changes them: ``kedro run`` never ends as
    ``Aborted!`` on an error (:func:`_without_abort`). Loaded on use, so ``mle-hand`` imports no Kedro."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["run"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "run":
            return None
        from kedro.framework.cli.project import run

        return _without_abort(run)


# Kedro imports `<package>.cli` for project commands and refuses to start (every `kedro` command!)
# unless it has a click group named `cli`; its commands override Kedro's. This module is the
# `mle-hand` script; the group only wraps `kedro run` (see _ProjectCommands).
cli = _ProjectCommands(name="mle_hand_pipeline")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mle-hand", description="MLE hand pose estimation tools")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser(
        "predict",
        help="predict 21 hand keypoints (+ sigmas) on images",
        description="Predict 21 hand keypoints and their sigmas in source-image pixels; writes "
        "predictions.json, keypoints.csv and overlays/<image>.png under --out.",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files or folders (of images); an argument that is not a file is expanded as a glob",
    )
    predict.add_argument(
        "--model",
        required=True,
        help="training checkpoint (best.pt), ONNX file, MLflow run id, runs:/<run_id>[/model], "
        "models:/<name>/<version>, models:/<name>@<alias> or an MLflow model folder",
    )
    predict.add_argument(
        "--box",
        help="the hand's box x0,y0,x1,y1 in source pixels, for every image (default: whole image)",
    )
    predict.add_argument(
        "--box-scale",
        type=float,
        default=None,
        help="crop side / box side (default 1.5, as in training, for a tight box around the hand)",
    )
    predict.add_argument("--mirror", action="store_true", help="mirror the crop first (left hands)")
    predict.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    predict.add_argument("--device", default="auto", help="torch device (default auto: the GPU if any)")
    predict.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: a checkpoint's weights cast to bf16 once (torch backend)",
    )
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument(
        "--out", default="predictions", help="output folder, new or empty (default ./predictions)"
    )
    predict.add_argument(
        "--replace", action="store_true", help="replace the results of an earlier run in --out"
    )
    predict.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                         "sqlite:///mlflow.db)")  # fmt: skip

    export = commands.add_parser(
        "export-onnx",
        help="export a checkpoint's inference graph to ONNX",
        description="Export stage T of a training checkpoint (no flows) to ONNX with a dynamic batch "
        "axis and check it against PyTorch with onnxruntime.",
    )
    export.add_argument("--model", required=True, help="training checkpoint (best.pt / last.pt)")
    export.add_argument("--out", required=True, help="ONNX file to write")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from mle_hand_pipeline.model_source import needs_tracking_store
    from mle_hand_pipeline.predict import (
        DEFAULT_BOX_SCALE,
        ModelNotFoundError,
        check_out_dir,
        load_predictor,
        parse_box,
        predict_images,
        resolve_images,
        write_outputs,
    )

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    elif needs_tracking_store(args.model) and not os.environ.get("MLFLOW_TRACKING_URI"):
        if not Path("mlflow.db").is_file():  # MLflow's default store: it would create an empty one here
            print(
                f"mle-hand predict: error: model {args.model} is read from an MLflow tracking store, and "
                f"{Path.cwd()} has none (no mlflow.db): run in the project's folder, or give the store "
                "with --tracking-uri or MLFLOW_TRACKING_URI",
                file=sys.stderr,
            )
            return EXIT_USAGE
    from mle_hand_pipeline.tracking_server import apply_http_defaults

    apply_http_defaults()  # a dead tracking server fails the model's download in seconds, not minutes
    try:
        box = parse_box(args.box)
        images = resolve_images(args.images)
        check_out_dir(args.out, args.replace)
    except (ValueError, OSError) as error:
        print(f"mle-hand predict: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        predictor = load_predictor(args.model, args.backend, args.device, args.precision)
    except (ModelNotFoundError, ValueError) as error:
        print(f"mle-hand predict: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    predictions, failures = predict_images(
        predictor,
        images,
        box=box,
        box_scale=DEFAULT_BOX_SCALE if args.box_scale is None else args.box_scale,
        mirrored=args.mirror,
        batch_size=args.batch_size,
    )
    written = write_outputs(predictions, failures, args.out, predictor, replace=args.replace)
    print(
        f"{len(predictions)} image(s) predicted with {predictor.backend} "
        f"({predictor.source}); wrote {written.json}, {written.csv}, {len(written.overlays)} overlay(s)"
    )
    for failure in failures:
        print(f"FAILED {failure.error}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(images)} image(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mle_hand_pipeline.export import check_onnx, export_onnx
    from mle_hand_pipeline.training.checkpoint import load_model

    if not Path(args.model).is_file():
        print(f"mle-hand export-onnx: error: no such checkpoint {args.model}", file=sys.stderr)
        return EXIT_USAGE
    model, spec = load_model(args.model)
    export_onnx(model, spec.input_size, args.out)
    check = check_onnx(args.out, model, spec.input_size)
    print(
        f"wrote {args.out} (input images (B, 3, {spec.input_size}, {spec.input_size})); max abs difference "
        f"to PyTorch: {check['max_abs_diff_coords_px']:.2e} px on coordinates"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mle-hand``; returns the exit code."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # opt in with MLFLOW_DISABLE_TELEMETRY=false
    args = _parser().parse_args(argv)
    if args.command == "predict":
        return _predict(args)
    return _export(args)


if __name__ == "__main__":
    sys.exit(main())
