"""Nodes of the ``predict`` pipeline: thin glue around :mod:`mle_hand_pipeline.predict`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from PIL import Image

from mle_hand_pipeline.parameters import PredictParams
from mle_hand_pipeline.predict import (
    ImagePrediction,
    keypoints_rows,
    load_predictor,
    overlay,
    overlay_names,
    predict_images,
    predictions_document,
    resolve_images,
)

logger = logging.getLogger(__name__)


class PredictFailuresError(RuntimeError):
    """Some images could not be predicted (the others' outputs are written)."""


def find_images(images: str | list[str]) -> list[str]:
    """Expand ``predict.images`` (a glob, a path or a list of them) into image paths."""
    paths = resolve_images(images)
    if not paths:
        raise FileNotFoundError("predict.images lists no image")
    logger.info("predicting %d image(s)", len(paths))
    return paths


def predict_keypoints(image_paths: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """Load ``predict.model`` (:class:`...parameters.PredictParams`) and predict every image; bad images
    are listed under ``failures``.

    Returns the JSON document of :func:`...predict.predictions_document` (keypoints and sigmas (21, 2)
    in source pixels and the crop per image; the failures).
    """
    predict = PredictParams.of(params)
    predictor = load_predictor(predict.model, predict.backend, predict.device, predict.precision)
    predictions, failures = predict_images(
        predictor,
        image_paths,
        box=predict.box,
        box_scale=predict.box_scale,
        mirrored=predict.mirrored,
        batch_size=predict.batch_size,
    )
    for failure in failures:
        logger.warning("FAILED %s", failure.error)
    return predictions_document(predictions, failures, predictor)


def _predictions(results: dict[str, Any]) -> list[ImagePrediction]:
    return [ImagePrediction.from_record(record) for record in results["predictions"]]


def tabulate_keypoints(results: dict[str, Any]) -> pd.DataFrame:
    """One row per (image, keypoint): image, keypoint, name, x, y, sigma_x, sigma_y."""
    columns = ["image", "keypoint", "name", "x", "y", "sigma_x", "sigma_y"]
    return pd.DataFrame(keypoints_rows(_predictions(results)), columns=columns)


def draw_overlays(results: dict[str, Any]) -> tuple[dict[str, Image.Image], list[str]]:
    """``{image stem: source image with the predicted skeleton and the crop square}``, and the stems
    (a small in-memory output that lets :func:`check_failures` run after the overlays are saved,
    even when there are none)."""
    predictions = _predictions(results)
    names = overlay_names(predictions)
    return {name: Image.fromarray(overlay(p)) for name, p in zip(names, predictions, strict=True)}, names


def check_failures(
    results: dict[str, Any], keypoints: pd.DataFrame, overlay_files: list[str], fail_on_error: bool
) -> None:
    """Fail the run, naming the bad images, when any image failed and ``fail_on_error``.

    ``keypoints`` and ``overlay_files`` are inputs only so that this node runs after every output is
    saved.
    """
    del keypoints, overlay_files
    failures = results["failures"]
    if failures and fail_on_error:
        listing = "\n".join(f"  {f['error']}" for f in failures)
        raise PredictFailuresError(
            f"{len(failures)} of {len(failures) + len(results['predictions'])} image(s) failed "
            f"(the others' outputs are written):\n{listing}"
        )
