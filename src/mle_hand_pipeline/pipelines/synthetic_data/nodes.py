"""Nodes of the ``synthetic_data`` pipeline: thin wrappers over :mod:`mle_hand_pipeline.synthetic`.

The datasets themselves are folders in the original layouts, written to the roots given in the
parameters (so the preprocessing readers can be pointed at them like at real downloads). Each node
returns its summary and the root it wrote: the catalog's folder entry checks that root is the one it
names, so the raw data is a node output that the default pipeline's preprocessing consumes.
"""

from __future__ import annotations

from typing import Any

from mle_hand_pipeline.synthetic import FreiHANDConfig, RHDConfig, generate_freihand, generate_rhd


def generate_freihand_dataset(params: dict[str, Any], seed: int, workers: int) -> tuple[dict[str, Any], str]:
    """Render the synthetic FreiHAND set described by ``params`` (``synthetic_data.freihand``).

    Returns:
        Summary (root, image and mask counts, hand sizes in pixels, keypoints out of frame) and the root.
    """
    config = FreiHANDConfig.from_params(params)
    return generate_freihand(config, seed=seed, workers=workers), config.root


def generate_rhd_dataset(params: dict[str, Any], seed: int, workers: int) -> tuple[dict[str, Any], str]:
    """Render the synthetic RHD set described by ``params`` (``synthetic_data.rhd``).

    Returns:
        Summary per split (image and hand counts, hands with fewer than 10 visible keypoints, mean
        visible keypoints, hand sizes in pixels) and the root.
    """
    config = RHDConfig.from_params(params)
    return generate_rhd(config, seed=seed, workers=workers), config.root


def combine_summaries(freihand: dict[str, Any], rhd: dict[str, Any]) -> dict[str, Any]:
    """One summary of both datasets; a single output later pipelines can depend on."""
    return {"freihand": freihand, "rhd": rhd}
