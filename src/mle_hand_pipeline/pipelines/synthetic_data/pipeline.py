"""``synthetic_data``: render a small FreiHAND-layout and RHD-layout dataset of procedural hands.

Inputs are parameters only (``conf/base/parameters_synthetic_data.yml``); the images, masks and
label files go to ``synthetic_data.freihand.root`` and ``synthetic_data.rhd.root``, which are the
outputs ``synthetic_freihand_raw`` and ``synthetic_rhd_raw`` (folders, catalog.yml). The summaries are
``synthetic_freihand_summary``, ``synthetic_rhd_summary`` and both combined in ``synthetic_data_summary``.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.synthetic_data.nodes import (
    combine_summaries,
    generate_freihand_dataset,
    generate_rhd_dataset,
)


def create_pipeline(**kwargs) -> Pipeline:
    """The ``synthetic_data`` pipeline (three nodes, tagged ``synthetic_data``)."""
    return Pipeline(
        [
            Node(
                generate_freihand_dataset,
                [
                    "params:synthetic_data.freihand",
                    "params:synthetic_data.seed",
                    "params:synthetic_data.workers",
                ],
                ["synthetic_freihand_summary", "synthetic_freihand_raw"],
                name="generate_synthetic_freihand",
            ),
            Node(
                generate_rhd_dataset,
                ["params:synthetic_data.rhd", "params:synthetic_data.seed", "params:synthetic_data.workers"],
                ["synthetic_rhd_summary", "synthetic_rhd_raw"],
                name="generate_synthetic_rhd",
            ),
            Node(
                combine_summaries,
                ["synthetic_freihand_summary", "synthetic_rhd_summary"],
                "synthetic_data_summary",
                name="combine_synthetic_summaries",
            ),
        ],
        tags=["synthetic_data"],
    )
