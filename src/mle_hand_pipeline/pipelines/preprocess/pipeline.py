"""``freihand_preprocess`` and ``rhd_preprocess``: one template, namespaced per dataset.

Only the reader differs between the datasets; filtering, cropping, the summary and the visual check
are the same nodes under the ``freihand`` or ``rhd`` namespace.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.preprocess.nodes import (
    keep_visible,
    make_crops,
    plot_crop_grid,
    read_freihand_annotations,
    read_rhd_annotations,
    summarise,
)

READERS = {"freihand": read_freihand_annotations, "rhd": read_rhd_annotations}


def _template(reader) -> Pipeline:
    return Pipeline(
        [
            Node(
                reader,
                ["params:raw_root", "params:preprocess"],
                ["annotations", "read_rejections"],
                name="read",
            ),
            Node(
                keep_visible,
                ["annotations", "params:preprocess"],
                ["visible_annotations", "filter_rejections"],
                name="filter_visible",
            ),
            Node(
                make_crops,
                ["visible_annotations", "params:raw_root", "crops", "params:preprocess"],
                ["hands", "crop_rejections"],
                name="make_crops",
            ),
            Node(
                summarise,
                ["hands", "read_rejections", "filter_rejections", "crop_rejections", "params:preprocess"],
                ["preprocess_summary", "rejections"],
                name="summarise",
            ),
            Node(
                plot_crop_grid,
                ["hands", "crops", "params:preprocess"],
                "crops_grid",
                name="plot_crop_grid",
            ),
        ]
    )


def create_pipeline(dataset: str) -> Pipeline:
    """The preprocessing pipeline of ``dataset`` ("freihand" or "rhd").

    Reads ``params:<dataset>_root`` (runtime-overridable: ``--params=rhd_root=PATH``) and writes the
    catalog entries ``<dataset>.hands``, ``<dataset>.rejections``, ``<dataset>.preprocess_summary``,
    ``<dataset>.crops_grid`` and the crops under ``<dataset>.crops``.
    """
    return Pipeline(
        _template(READERS[dataset]),
        namespace=dataset,
        parameters={
            "params:raw_root": f"params:{dataset}_root",
            "params:preprocess": f"params:{dataset}.preprocess",
        },
        tags=["preprocess", dataset],
    )
