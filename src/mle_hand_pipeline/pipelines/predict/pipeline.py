"""``predict``: run a trained model on the images of ``params:predict.images``."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.predict.nodes import (
    check_failures,
    draw_overlays,
    find_images,
    predict_keypoints,
    tabulate_keypoints,
)


def create_pipeline() -> Pipeline:
    """Outputs (see conf/base/catalog_predict.yml): ``predict_results`` (JSON: every image's keypoints,
    sigmas and crop, plus the failures), ``predict_keypoints`` (CSV, one row per keypoint) and
    ``predict_overlays`` (one PNG per image)."""
    return Pipeline(
        [
            Node(find_images, "params:predict.images", "predict_image_list", name="find_images"),
            Node(
                predict_keypoints,
                ["predict_image_list", "params:predict"],
                "predict_results",
                name="predict_keypoints",
            ),
            Node(tabulate_keypoints, "predict_results", "predict_keypoints", name="tabulate_keypoints"),
            Node(
                draw_overlays,
                "predict_results",
                ["predict_overlays", "predict_overlay_files"],
                name="draw_overlays",
            ),
            Node(
                check_failures,
                [
                    "predict_results",
                    "predict_keypoints",
                    "predict_overlay_files",
                    "params:predict.fail_on_error",
                ],
                None,
                name="check_failures",
            ),
        ],
        tags=["predict"],
    )
