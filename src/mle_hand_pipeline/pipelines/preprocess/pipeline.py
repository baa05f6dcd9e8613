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


def preprocess_template(dataset: str) -> Pipeline:
    """The preprocessing nodes of ``dataset`` (its reader, then the shared nodes), un-namespaced.

    Free inputs: ``raw_root`` (the raw dataset's folder) and ``settings`` (a preprocessing block, as
    ``rhd.preprocess``). ``create_pipeline`` maps them to parameters; ``pretrain_<dataset>`` maps them
    to its rendered set and its merged settings.
    """
    return Pipeline(
        [
            Node(
                READERS[dataset],
                ["raw_root", "settings"],
                ["annotations", "read_rejections"],
                name="read",
            ),
            Node(
                keep_visible,
                ["annotations", "settings"],
                ["visible_annotations", "filter_rejections"],
                name="filter_visible",
            ),
            Node(
                make_crops,
                ["visible_annotations", "raw_root", "settings"],
                "crops",
                name="make_crops",
            ),
            Node(crop_table, "crops", ["hands", "crop_rejections"], name="crop_table"),
            Node(
                summarise,
                ["hands", "read_rejections", "filter_rejections", "crop_rejections", "settings"],
                ["preprocess_summary", "rejections"],
                name="summarise",
            ),
            Node(
                plot_crop_grid,
                ["hands", "crops", "settings"],
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
    return Pipeline(
        preprocess_template(dataset),
        namespace=dataset,
        inputs={
            "raw_root": raw_root or f"params:{dataset}_root",
            "settings": f"params:{dataset}.preprocess",
        },
        tags=["preprocess", dataset],
    )
