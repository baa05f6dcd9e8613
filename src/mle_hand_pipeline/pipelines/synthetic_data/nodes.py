"""Nodes of the ``synthetic_data`` pipeline: thin wrappers over :mod:`mle_hand_pipeline.synthetic`.

The datasets themselves are folders in the original layouts (written straight to the roots given in
the parameters, so that the preprocessing readers can be pointed at them like at real downloads);
what flows through the catalog are JSON summaries of what was written.
"""

from __future__ import annotations

from typing import Any

from mle_hand_pipeline.synthetic import FreiHANDConfig, RHDConfig, generate_freihand, generate_rhd


def generate_freihand_dataset(params: dict[str, Any], seed: int, workers: int) -> dict[str, Any]:
    """Render the synthetic FreiHAND set described by ``params`` (``synthetic_data.freihand``).

    Returns:
        Summary: root, image and mask counts, hand sizes in pixels, keypoints out of frame.
    """
    return generate_freihand(FreiHANDConfig.from_params(params), seed=seed, workers=workers)


def generate_rhd_dataset(params: dict[str, Any], seed: int, workers: int) -> dict[str, Any]:
    """Render the synthetic RHD set described by ``params`` (``synthetic_data.rhd``).

    Returns:
        Summary per split: image and hand counts, hands with fewer than 10 visible keypoints,
        mean visible keypoints, hand sizes in pixels.
    """
    return generate_rhd(RHDConfig.from_params(params), seed=seed, workers=workers)


def combine_summaries(freihand: dict[str, Any], rhd: dict[str, Any]) -> dict[str, Any]:
    """One summary of both datasets; a single output later pipelines can depend on."""
    return {"freihand": freihand, "rhd": rhd}
