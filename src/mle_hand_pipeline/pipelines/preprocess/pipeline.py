"""``freihand_preprocess`` and ``rhd_preprocess``: one template, namespaced per dataset.

Only the reader differs between the datasets; filtering, cropping, the summary and the visual check
are the same nodes under the ``freihand`` or ``rhd`` namespace. The crops (``<dataset>_crops``, a crop
store written all or nothing) are the output of ``make_crops``; the hand table comes out of the store,
so the two are made by one run.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.preprocess.nodes import (
    crop_table,
    keep_visible,
    make_crops,
    plot_crop_grid,
    read_freihand_annotations,
    read_rhd_annotations,
    summarise,
)

READERS = {"freihand": read_freihand_annotations, "rhd": read_rhd_annotations}


def _template(reader, raw_root: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                reader,
                [raw_root, "params:preprocess"],
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
                ["visible_annotations", raw_root, "params:preprocess"],
                "crops",
                name="make_crops",
            ),
            Node(crop_table, "crops", ["hands", "crop_rejections"], name="crop_table"),
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


def create_pipeline(dataset: str, raw_root: str | None = None) -> Pipeline:
    """The preprocessing pipeline of ``dataset`` ("freihand" or "rhd").

    Reads the raw dataset at ``params:<dataset>_root`` (runtime-overridable: ``--params=rhd_root=PATH``),
    or, with ``raw_root``, at the folder that catalog entry loads as (the default pipeline passes the
    synthetic data's output, so the graph shows raw data -> crops). Writes the catalog entries
    ``<dataset>.crops`` (crop store), ``<dataset>.hands``, ``<dataset>.rejections``,
    ``<dataset>.preprocess_summary`` and ``<dataset>.crops_grid``.
    """
    root_input = "raw_root" if raw_root else "params:raw_root"
    return Pipeline(
        _template(READERS[dataset], root_input),
        namespace=dataset,
        inputs={"raw_root": raw_root} if raw_root else None,
        parameters={
            "params:preprocess": f"params:{dataset}.preprocess",
            **({} if raw_root else {"params:raw_root": f"params:{dataset}_root"}),
        },
        tags=["preprocess", dataset],
    )
