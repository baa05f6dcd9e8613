"""Procedural synthetic hands written in FreiHAND's and RHD's original on-disk layouts.

:mod:`.hand_model` poses a 3D kinematic hand, :mod:`.render` draws it (z-buffered shaded capsules,
backgrounds, occluders, RHD labels, visibility) and :mod:`.writers` composes scenes and writes the
files. Plain Python: no Kedro imports, so the generator can be used from scripts and tests.
"""

from mle_hand_pipeline.synthetic.writers import (
    FreiHANDConfig,
    RHDConfig,
    generate_freihand,
    generate_rhd,
    render_freihand_sample,
    render_rhd_sample,
)

__all__ = [
    "FreiHANDConfig",
    "RHDConfig",
    "generate_freihand",
    "generate_rhd",
    "render_freihand_sample",
    "render_rhd_sample",
]
