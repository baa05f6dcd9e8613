"""Soft-argmax and argmax decoding: the cell-centre convention, borders, gradients."""

import pytest
import torch

from mle_hand_pipeline.models import argmax_decode, cell_centres, local_soft_argmax, soft_argmax
from mle_hand_pipeline.models.pose_net import SequentialHeatmapNet


def norm(cell: float, n: int) -> float:
    """Normalised coordinate of a (fractional) cell index: centre of cell j is (j + 0.5) / n - 0.5."""
    return (cell + 0.5) / n - 0.5


@pytest.mark.parametrize("cell", [(0, 0), (15, 15), (0, 15), (7, 3), (15, 0)])
def test_soft_argmax_sharp_peak_at_cell_centre(cell):
    h, w = 16, 16
    maps = torch.zeros(2, 3, h, w)
    iy, ix = cell
    maps[..., iy, ix] = 60.0  # all other cells have weight ~e^-60
    xy = soft_argmax(maps)
    assert xy.shape == (2, 3, 2)
    expected = torch.tensor([norm(ix, w), norm(iy, h)])
    torch.testing.assert_close(xy, expected.expand_as(xy), atol=1e-5, rtol=0)


def test_soft_argmax_recovers_subcell_location_of_gaussian_logits():
    h, w = 32, 24
    cx, cy = 10.3, 20.8  # in cells
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    logits = -((xs - cx) ** 2 + (ys - cy) ** 2) / 2.0  # sigma 1 cell
    xy = soft_argmax(logits[None].double())
    torch.testing.assert_close(xy[0], torch.tensor([norm(cx, w), norm(cy, h)]).double(), atol=1e-6, rtol=0)


def test_soft_argmax_uniform_map_is_centre():
    torch.testing.assert_close(soft_argmax(torch.zeros(1, 8, 8)), torch.zeros(1, 2), atol=1e-6, rtol=0)


def test_soft_argmax_is_differentiable():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(soft_argmax, (logits,))
    soft_argmax(logits.float()).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_soft_argmax_float32_under_autocast():
    maps = torch.randn(1, 2, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xy = soft_argmax(maps.bfloat16())
    assert xy.dtype == torch.float32


def test_cell_centres():
    torch.testing.assert_close(cell_centres(4), torch.tensor([-0.375, -0.125, 0.125, 0.375]))


def test_argmax_decode_quarter_shift_towards_higher_neighbour():
    h, w = 16, 16
    maps = torch.zeros(4, h, w)
    maps[:, 5, 7] = 1.0
    maps[0, 5, 8] = 0.5  # right higher -> +0.25 in x
    maps[1, 5, 6] = 0.5  # left higher -> -0.25 in x
    maps[2, 6, 7] = 0.5  # lower row higher -> +0.25 in y
    # maps[3]: symmetric neighbours -> no shift
    xy = argmax_decode(maps)
    expected = torch.tensor(
        [
            [norm(7.25, w), norm(5, h)],
            [norm(6.75, w), norm(5, h)],
            [norm(7, w), norm(5.25, h)],
            [norm(7, w), norm(5, h)],
        ]
    )
    torch.testing.assert_close(xy, expected)


def test_argmax_decode_no_shift_on_border():
    maps = torch.zeros(2, 8, 8)
    maps[0, 0, 0] = 1.0
    maps[0, 1, 1] = 0.5
    maps[1, 7, 7] = 1.0
    maps[1, 6, 7] = 0.5
    xy = argmax_decode(maps)
    torch.testing.assert_close(xy, torch.tensor([[norm(0, 8), norm(0, 8)], [norm(7, 8), norm(7, 8)]]))


def test_argmax_decode_keeps_leading_dims():
    assert argmax_decode(torch.randn(2, 3, 4, 6, 6)).shape == (2, 3, 4, 2)


def test_local_soft_argmax_ignores_mass_away_from_the_peak():
    """A second bump pulls the global expectation towards it; the window around the argmax does not."""
    h = w = 16
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    peak = 8.0 - ((xs - 12.3) ** 2 + (ys - 3.6) ** 2) / (2 * 0.5**2)
    bump = 6.0 - ((xs - 2.0) ** 2 + (ys - 13.0) ** 2) / 2.0
    maps = torch.logaddexp(peak, bump).float()[None]
    local = local_soft_argmax(maps, 2)[0]
    assert abs(local[0].item() - norm(12.3, w)) < 0.01 and abs(local[1].item() - norm(3.6, h)) < 0.01
    whole = soft_argmax(maps)[0]
    assert abs(whole[0].item() - norm(12.3, w)) > 0.1  # pulled towards the bump


@pytest.mark.parametrize("cell", [(0, 0), (15, 15), (0, 15), (7, 3)])
def test_local_soft_argmax_at_the_border_uses_the_cells_inside(cell):
    maps = torch.full((1, 16, 16), -60.0)
    iy, ix = cell
    maps[0, iy, ix] = 0.0
    expected = torch.tensor([norm(ix, 16), norm(iy, 16)])
    torch.testing.assert_close(local_soft_argmax(maps, 1)[0], expected, atol=1e-5, rtol=0)


def test_local_soft_argmax_equals_soft_argmax_when_the_window_covers_the_map_and_has_its_gradient():
    maps = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(local_soft_argmax(maps, 4), soft_argmax(maps))
    local = torch.autograd.grad(local_soft_argmax(maps, 4).sum(), maps)[0]
    torch.testing.assert_close(local, torch.autograd.grad(soft_argmax(maps).sum(), maps)[0])
    with pytest.raises(ValueError, match="radius must be >= 1"):
        local_soft_argmax(maps, 0)


def test_the_network_decodes_with_the_window_it_was_given():
    torch.manual_seed(0)
    net = SequentialHeatmapNet("resnet18", stages=1, input_size=64, head_channels=8, decode_window=1).eval()
    out = net(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(out.coords, local_soft_argmax(out.heatmaps, 1))
    with pytest.raises(ValueError, match="decode_window must be >= 0"):
        SequentialHeatmapNet("resnet18", stages=1, input_size=64, decode_window=-1)
