"""The written datasets: exact FreiHAND/RHD layouts, labels that match the pixels, determinism."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mle_hand_pipeline.keypoints import RHD_TO_COMMON
from mle_hand_pipeline.synthetic import writers
from mle_hand_pipeline.synthetic.writers import (
    FreiHANDConfig,
    RHDConfig,
    encode_depth,
    generate_freihand,
    generate_rhd,
    render_rhd_sample,
)

SEED = 7
N_UNIQUE = 6
N_TRAIN, N_EVAL = 6, 3


def _generate(root: Path, workers: int) -> tuple[dict, dict]:
    freihand = generate_freihand(
        FreiHANDConfig(root=str(root / "FreiHAND_pub_v2"), n_unique=N_UNIQUE),
        seed=SEED,
        workers=workers,
        progress=False,
    )
    rhd = generate_rhd(
        RHDConfig(root=str(root / "RHD_published_v2"), n_training=N_TRAIN, n_evaluation=N_EVAL),
        seed=SEED,
        workers=workers,
        progress=False,
    )
    return freihand, rhd


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    freihand, rhd = _generate(root, workers=1)
    return root, freihand, rhd


@pytest.fixture(scope="module")
def fh_root(generated) -> Path:
    return generated[0] / "FreiHAND_pub_v2"


@pytest.fixture(scope="module")
def rhd_root(generated) -> Path:
    return generated[0] / "RHD_published_v2"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != writers._MARKER  # the marker records the (differing) root
    }


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


# ---------------------------------------------------------------------------------------------
# FreiHAND


def test_freihand_layout(fh_root, generated):
    summary = generated[1]
    rgb = sorted((fh_root / "training" / "rgb").iterdir())
    masks = sorted((fh_root / "training" / "mask").iterdir())
    assert [p.name for p in rgb] == [f"{i:08d}.jpg" for i in range(4 * N_UNIQUE)]
    assert [p.name for p in masks] == [f"{i:08d}.jpg" for i in range(N_UNIQUE)]
    for path in rgb:
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (224, 224))
    for path in masks:
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "L", (224, 224))
        mask = _load(path)
        # JPEG blurs the 0/255 edges a little, but the mask stays essentially binary.
        assert np.mean((mask < 30) | (mask > 225)) > 0.97
        assert 0.05 < np.mean(mask > 127) < 0.7
    xyz = json.loads((fh_root / "training_xyz.json").read_text())
    K = json.loads((fh_root / "training_K.json").read_text())
    assert np.array(xyz).shape == (N_UNIQUE, 21, 3)
    assert np.array(K).shape == (N_UNIQUE, 3, 3)
    assert summary["n_images"] == 4 * N_UNIQUE and summary["n_masks"] == N_UNIQUE
    assert summary["n_unique"] == N_UNIQUE


def test_freihand_cameras_and_keypoints(fh_root):
    xyz = np.array(json.loads((fh_root / "training_xyz.json").read_text()))
    K = np.array(json.loads((fh_root / "training_K.json").read_text()))
    assert np.all(K[:, 0, 0] == K[:, 1, 1])
    assert np.all(np.abs(K[:, :2, 2] - 112) <= 4)
    np.testing.assert_array_equal(K[:, 2], np.tile([0.0, 0.0, 1.0], (N_UNIQUE, 1)))
    assert np.all(xyz[..., 2] > 0.1)
    uvw = np.einsum("nij,nkj->nki", K, xyz)
    uv = uvw[..., :2] / uvw[..., 2:]
    size = (uv.max(axis=1) - uv.min(axis=1)).max(axis=1)
    assert np.all((size > 60) & (size < 190))
    assert np.mean((uv >= 0) & (uv <= 223)) > 0.95


def test_freihand_keypoints_sit_on_the_hand(fh_root):
    xyz = np.array(json.loads((fh_root / "training_xyz.json").read_text()))
    K = np.array(json.loads((fh_root / "training_K.json").read_text()))
    on_hand, on_skin = [], []
    for i in range(N_UNIQUE):
        uvw = xyz[i] @ K[i].T
        uv = np.rint(uvw[:, :2] / uvw[:, 2:]).astype(int)
        mask = _load(fh_root / "training" / "mask" / f"{i:08d}.jpg") > 127
        gs = _load(fh_root / "training" / "rgb" / f"{i:08d}.jpg").astype(int)
        green = np.median(gs[~mask], axis=0)
        for j, (u, v) in enumerate(uv):
            if not (2 <= u < 222 and 2 <= v < 222):
                continue
            on_hand.append(mask[v - 2 : v + 3, u - 2 : u + 3].any())
            if j in (0, 5, 9, 13, 17):  # wrist and knuckles: skin, not green screen
                on_skin.append(np.abs(gs[v, u] - green).sum() > 60)
    # Only the occasional occluding object covers a keypoint.
    assert np.mean(on_hand) > 0.85
    assert np.mean(on_skin) > 0.85


def test_freihand_versions_share_the_hand_not_the_background(fh_root):
    for i in range(N_UNIQUE):
        mask = _load(fh_root / "training" / "mask" / f"{i:08d}.jpg") > 127
        versions = [
            _load(fh_root / "training" / "rgb" / f"{v * N_UNIQUE + i:08d}.jpg").astype(float)
            for v in range(4)
        ]
        # Away from the hand's edge (JPEG ringing, anti-aliasing): 3-pixel erosion both ways.
        inner = mask.copy()
        outer = ~mask
        for axis in (0, 1):
            for shift in (-3, 3):
                inner &= np.roll(mask, shift, axis=axis)
                outer &= ~np.roll(mask, shift, axis=axis)
        for v in (1, 2):
            hand_diff = np.abs(versions[v] - versions[0])[inner].mean()
            back_diff = np.abs(versions[v] - versions[0])[outer].mean()
            assert hand_diff < 6, (i, v, hand_diff)
            assert back_diff > 20, (i, v, back_diff)
        # The "auto" version is colour-treated as a whole: same structure, shifted colours.
        corr = np.corrcoef(versions[3][inner].mean(axis=1), versions[0][inner].mean(axis=1))[0, 1]
        assert corr > 0.6
        assert np.abs(versions[3] - versions[0])[outer].mean() > 20


# ---------------------------------------------------------------------------------------------
# RHD


@pytest.mark.parametrize(("split", "n"), [("training", N_TRAIN), ("evaluation", N_EVAL)])
def test_rhd_image_files(rhd_root, split, n):
    for kind in ("color", "mask", "depth"):
        names = sorted(p.name for p in (rhd_root / split / kind).iterdir())
        assert names == [f"{i:05d}.png" for i in range(n)]
    for i in range(n):
        name = f"{i:05d}.png"
        with Image.open(rhd_root / split / "color" / name) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (320, 320))
        with Image.open(rhd_root / split / "mask" / name) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (320, 320))
        with Image.open(rhd_root / split / "depth" / name) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (320, 320))
        mask = _load(rhd_root / split / "mask" / name)
        assert mask.dtype == np.uint8 and mask.ndim == 2 and mask.max() <= 33
        depth_png = _load(rhd_root / split / "depth" / name).astype(np.int32)
        assert np.all(depth_png[..., 2] == 0)
        depth = (depth_png[..., 0] * 256 + depth_png[..., 1]) / 65535.0 * 5.0
        assert 0.05 < depth.min() and depth.max() <= 5.0
        # Hands lie in front of the backdrop.
        if (mask >= 2).any() and (mask == 0).any():
            assert np.median(depth[mask >= 2]) < np.median(depth[mask == 0])


@pytest.mark.parametrize(("split", "n"), [("training", N_TRAIN), ("evaluation", N_EVAL)])
def test_rhd_pickle_is_plain_and_exact(rhd_root, split, n):
    path = rhd_root / split / f"anno_{split}.pickle"
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x04"  # protocol 4
    anno = pickle.loads(raw)
    assert type(anno) is dict and list(anno) == list(range(n))
    for sample_id, entry in anno.items():
        assert type(sample_id) is int
        assert type(entry) is dict and set(entry) == {"xyz", "uv_vis", "K"}
        assert all(type(k) is str for k in entry)
        for key, shape in (("xyz", (42, 3)), ("uv_vis", (42, 3)), ("K", (3, 3))):
            assert type(entry[key]) is np.ndarray
            assert entry[key].dtype == np.float32 and entry[key].shape == shape
        K = entry["K"].astype(np.float64)
        assert K[0, 0] == K[1, 1] and tuple(K[:2, 2]) == (160.0, 160.0)
        uvw = entry["xyz"].astype(np.float64) @ K.T
        np.testing.assert_allclose(entry["uv_vis"][:, :2], uvw[:, :2] / uvw[:, 2:], atol=1e-3)
        assert set(np.unique(entry["uv_vis"][:, 2])) <= {0.0, 1.0}
        assert np.all(entry["xyz"][:, 2] > 0)


def test_rhd_pickle_loads_with_the_projects_restricted_unpickler(rhd_root):
    from mle_hand_pipeline.datasets.safe_pickle import load_annotation_pickle

    anno = load_annotation_pickle(rhd_root / "training" / "anno_training.pickle")
    assert len(anno) == N_TRAIN


def test_rhd_rows_are_rhd_order_left_then_right(rhd_root):
    anno = pickle.loads((rhd_root / "training" / "anno_training.pickle").read_bytes())
    for entry in anno.values():
        for hand, sign in ((0, -1.0), (1, 1.0)):
            rows = entry["xyz"][21 * hand : 21 * hand + 21].astype(np.float64)
            # RHD order: rows 8, 12, 16, 20 are the knuckles (each finger listed tip first).
            palm = np.linalg.norm(rows[[8, 12, 16, 20]] - rows[0], axis=1)
            assert np.all((palm > 0.065) & (palm < 0.105)), palm
            common = rows[RHD_TO_COMMON]
            w = common[0]
            chirality = np.linalg.det(np.stack([common[5] - w, common[17] - w, common[1] - w]))
            assert np.sign(chirality) == sign  # rows 0-20 a left hand, 21-41 a right hand


def test_rhd_visible_keypoints_lie_on_their_hand(rhd_root):
    checked = 0
    for split, n in (("training", N_TRAIN), ("evaluation", N_EVAL)):
        anno = pickle.loads((rhd_root / split / f"anno_{split}.pickle").read_bytes())
        for i in range(n):
            mask = _load(rhd_root / split / "mask" / f"{i:05d}.png")
            uv_vis = anno[i]["uv_vis"]
            for k, (u, v, vis) in enumerate(uv_vis):
                if not vis:
                    continue
                lo, hi = (2, 17) if k < 21 else (18, 33)
                x, y = round(float(u)), round(float(v))
                assert 0 <= x < 320 and 0 <= y < 320
                window = mask[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                assert ((window >= lo) & (window <= hi)).any(), (split, i, k)
                checked += 1
    assert checked > 100


def test_rhd_hands_are_sized_and_some_are_hidden():
    # In memory, more samples than the written fixture, to see the distribution.
    cfg = RHDConfig(root="unused")
    n_visible, sizes = [], []
    for i in range(40):
        uv_vis = render_rhd_sample(cfg, SEED, "training", i).anno["uv_vis"]
        for hand in (uv_vis[:21], uv_vis[21:]):
            n_visible.append(hand[:, 2].sum())
            sizes.append(np.max(hand[:, :2].max(axis=0) - hand[:, :2].min(axis=0)))
    n_visible = np.array(n_visible)
    # A min_visible=10 filter must have work, but most hands must survive it.
    assert 0.05 <= np.mean(n_visible < 10) <= 0.45
    assert np.mean(n_visible == 21) > 0.02
    assert 20 < np.median(sizes) < 130


def test_rhd_summary_counts(rhd_root, generated):
    summary = generated[2]
    for split, n in (("training", N_TRAIN), ("evaluation", N_EVAL)):
        anno = pickle.loads((rhd_root / split / f"anno_{split}.pickle").read_bytes())
        counts = [entry["uv_vis"][h * 21 : h * 21 + 21, 2].sum() for entry in anno.values() for h in (0, 1)]
        assert summary[split]["n_images"] == n and summary[split]["n_hands"] == 2 * n
        assert summary[split]["n_hands_lt10_visible"] == sum(c < 10 for c in counts)


def test_encode_depth_round_trip():
    depth = np.array([[0.0, 0.3], [1.2345, 5.0]])
    png = encode_depth(depth)
    assert png.dtype == np.uint8 and png.shape == (2, 2, 3) and not png[..., 2].any()
    decoded = (png[..., 0].astype(np.int32) * 256 + png[..., 1]) / 65535.0 * 5.0
    np.testing.assert_allclose(decoded, depth, atol=5.0 / 65535)


# ---------------------------------------------------------------------------------------------
# Determinism and safety


def test_byte_identical_for_any_worker_count(generated, tmp_path):
    root = generated[0]
    again = tmp_path / "again"
    summaries = _generate(again, workers=2)
    for name in ("FreiHAND_pub_v2", "RHD_published_v2"):
        first, second = _files(root / name), _files(again / name)
        assert first.keys() == second.keys()
        assert [k for k in first if first[k] != second[k]] == []
    assert summaries[0]["hand_size_px"] == generated[1]["hand_size_px"]


def test_seed_changes_the_data(tmp_path):
    cfg = FreiHANDConfig(root=str(tmp_path / "a"), n_unique=1)
    generate_freihand(cfg, seed=1, workers=1, progress=False)
    first = _files(tmp_path / "a")
    generate_freihand(cfg, seed=2, workers=1, progress=False)
    second = _files(tmp_path / "a")
    assert first["training_xyz.json"] != second["training_xyz.json"]


def test_regenerating_removes_stale_files(tmp_path):
    cfg = RHDConfig(root=str(tmp_path / "rhd"), n_training=3, n_evaluation=1)
    generate_rhd(cfg, seed=0, workers=1, progress=False)
    generate_rhd(RHDConfig(root=cfg.root, n_training=2, n_evaluation=1), seed=0, workers=1, progress=False)
    names = sorted(p.name for p in (tmp_path / "rhd" / "training" / "color").iterdir())
    assert names == ["00000.png", "00001.png"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    real = tmp_path / "FreiHAND_pub_v2"
    (real / "training" / "rgb").mkdir(parents=True)
    (real / "training_xyz.json").write_text("[]")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_freihand(FreiHANDConfig(root=str(real), n_unique=1), seed=0, workers=1, progress=False)
    assert (real / "training_xyz.json").read_text() == "[]"


def test_unknown_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown"):
        RHDConfig.from_params({"n_trainig": 3})
    cfg = FreiHANDConfig.from_params({"n_unique": 2, "focal_px": [400, 500]})
    assert cfg.focal_px == (400, 500)
