"""Compose synthetic scenes and write them in FreiHAND's and RHD's original on-disk layouts.

FreiHAND (``root`` = ``.../FreiHAND_pub_v2``)::

    training/rgb/%08d.jpg    224x224 RGB JPEG, 4 versions x n_unique (id = version * n_unique + sample)
    training/mask/%08d.jpg   224x224 grayscale JPEG, 0/255 hand mask, one per unique sample
    training_xyz.json        n_unique x 21 x 3, metres, camera frame, common keypoint order
    training_K.json          n_unique x 3 x 3

RHD (``root`` = ``.../RHD_published_v2``), for ``split`` in ``training``, ``evaluation``::

    {split}/color/%05d.png   320x320 RGB PNG
    {split}/mask/%05d.png    320x320 uint8 single-channel PNG, labels 0..33
    {split}/depth/%05d.png   320x320x3 PNG, depth_m = (R * 256 + G) / 65535 * 5.0
    {split}/anno_{split}.pickle  {id: {'xyz': (42,3), 'uv_vis': (42,3), 'K': (3,3)}} float32, protocol 4

Every sample draws from its own generator ``np.random.default_rng([seed, dataset_code, index])``, and
the files are written by the worker that rendered them, so the output is byte-identical for any
number of workers.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mle_hand_pipeline.keypoints import RHD_TO_COMMON
from mle_hand_pipeline.synthetic import render
from mle_hand_pipeline.synthetic.hand_model import (
    HandPose,
    intrinsics,
    place_hand,
    project,
    random_rotation,
    rotation_matrix,
    sample_pose,
)

FREIHAND_VERSIONS = ("gs", "hom", "sample", "auto")
# Second entry of every sample's seed, so that the datasets never share a random stream.
DATASET_CODES = {"freihand": 0, "rhd_training": 1, "rhd_evaluation": 2}
RHD_SPLITS = ("training", "evaluation")
MIN_VISIBLE = 10  # the paper drops RHD hands with fewer visible keypoints; reported in the summary
_MARKER = ".synthetic_dataset.json"  # marks a root as ours, so regenerating may clear it


@dataclass(frozen=True)
class FreiHANDConfig:
    """Knobs of the synthetic FreiHAND set (see ``conf/base/parameters_synthetic_data.yml``).

    Attributes:
        root: output directory (the ``FreiHAND_pub_v2`` folder).
        n_unique: unique samples; 4 images each.
        image_size: side of the square images (px).
        focal_px: (low, high) range of fx == fy (px).
        principal_jitter_px: principal point = image centre ± this (px).
        hand_size_px: (low, high) range of max(w, h) of the projected keypoint box (px).
        centre_jitter_px: keypoint-box centre = image centre ± this (px).
        occluder_prob: chance of an object drawn over the hand.
        jpeg_quality: JPEG quality of images and masks.
        supersample: drawing resolution factor for anti-aliasing.
    """

    root: str = "data/01_raw/synthetic/FreiHAND_pub_v2"
    n_unique: int = 150
    image_size: int = 224
    focal_px: tuple[float, float] = (400.0, 650.0)
    principal_jitter_px: float = 3.0
    hand_size_px: tuple[float, float] = (80.0, 150.0)
    centre_jitter_px: float = 18.0
    occluder_prob: float = 0.25
    jpeg_quality: int = 92
    supersample: int = 2

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FreiHANDConfig:
        return cls(**_tuples(params, cls))


@dataclass(frozen=True)
class RHDConfig:
    """Knobs of the synthetic RHD set (see ``conf/base/parameters_synthetic_data.yml``).

    Attributes:
        root: output directory (the ``RHD_published_v2`` folder).
        n_training, n_evaluation: images per split.
        image_size: side of the square images (px); the principal point is its centre.
        focal_px: (low, high) range of fx == fy (px).
        hand_size_px: (low, high) range of max(w, h) of the projected keypoint box (px).
        size_ratio: (low, high) size ratio of the second hand to the first (same person, similar depth).
        edge_prob: chance, per hand, of being centred near or beyond the image border.
        near_prob: chance that the right hand is placed next to the left one (mutual occlusion).
        occluder_prob: chance of each of up to two objects drawn over a hand.
        supersample: drawing resolution factor for anti-aliasing.
    """

    root: str = "data/01_raw/synthetic/RHD_published_v2"
    n_training: int = 3200
    n_evaluation: int = 1000
    image_size: int = 320
    focal_px: tuple[float, float] = (240.0, 320.0)
    hand_size_px: tuple[float, float] = (30.0, 120.0)
    size_ratio: tuple[float, float] = (0.7, 1.4)
    edge_prob: float = 0.08
    near_prob: float = 0.15
    occluder_prob: float = 0.2
    supersample: int = 2

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RHDConfig:
        return cls(**_tuples(params, cls))


def _tuples(params: dict[str, Any], cls: type) -> dict[str, Any]:
    """Check keys against ``cls`` and turn YAML lists into tuples (hashable, picklable configs)."""
    unknown = set(params) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameters: {sorted(unknown)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


# ---------------------------------------------------------------------------------------------
# Scene composition


def _arm(
    rng: np.random.Generator,
    pose: HandPose,
    rotation: np.ndarray,
    translation: np.ndarray,
    *,
    upper: bool,
    forearm: float = 0.26,
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame arm polyline (P, 3) and radii (P,) leaving the wrist away from the fingers.

    The forearm follows the hand's proximal direction with a random wrist bend; an upper arm (RHD's
    "person" label) may follow. Arms are kept from swinging towards the camera, where a body would
    not be, and from crossing behind it.
    """
    s = pose.scale
    local_dir = np.array([rng.normal(0.0, 0.35), -1.0, rng.normal(0.0, 0.35)])
    direction = rotation @ (local_dir / np.linalg.norm(local_dir))
    direction[2] = max(direction[2], 0.0)
    # An arm pointing (almost) along the viewing ray would end in a stub inside the image; keep
    # enough of it in the image plane that it runs out of the frame or towards a visible elbow.
    planar = float(np.hypot(direction[0], direction[1]))
    if planar < 0.6:
        xy = direction[:2] / planar if planar > 1e-6 else np.array([1.0, 0.0])
        direction = np.array([0.6 * xy[0], 0.6 * xy[1], 0.8])
    direction /= np.linalg.norm(direction)
    start = rotation @ np.array([0.0, -0.035 * s, 0.0]) + translation
    points = [start, start + forearm * s * direction]
    radii = [0.024 * s, 0.034 * s]
    if upper:
        bend = rotation_matrix(rng.normal(size=3), rng.uniform(0.3, 1.6))
        up = bend @ direction
        up[2] = abs(up[2])  # the shoulder is further away than the elbow, towards the body
        points.append(points[-1] + 0.27 * s * up / np.linalg.norm(up))
        radii.append(0.045 * s)
    points = np.array(points)
    # Arms only recede from the wrist, so this only guards against projecting points behind the lens.
    points[:, 2] = np.maximum(points[:, 2], 0.08)
    return points, np.array(radii)


def _place(
    rng: np.random.Generator,
    pose: HandPose,
    K: np.ndarray,
    *,
    centre_px: np.ndarray,
    size_px: float,
    skin: np.ndarray,
    arm_colour: np.ndarray,
    upper_arm: bool,
    forearm: float,
) -> render.Hand3D:
    """Rotate and translate a posed hand into the camera frame and attach an arm."""
    rotation = random_rotation(rng)
    translation = place_hand(pose.joints, rotation, K, centre_px=tuple(centre_px), size_px=size_px)
    arm, arm_radii = _arm(rng, pose, rotation, translation, upper=upper_arm, forearm=forearm)
    return render.Hand3D(
        joints=pose.joints @ rotation.T + translation,
        radii=pose.radii,
        outline=pose.outline @ rotation.T + translation,
        outline_radii=pose.outline_radii,
        is_left=pose.is_left,
        skin=skin,
        arm=arm,
        arm_radii=arm_radii,
        arm_colour=arm_colour,
    )


def _arm_colour(rng: np.random.Generator, skin: np.ndarray, sleeve_prob: float) -> np.ndarray:
    if rng.uniform() < sleeve_prob:
        return render.random_colour(rng)
    return skin * rng.uniform(0.93, 1.03)


def _occlude(canvas: render.Canvas, rng: np.random.Generator, hand: render.Hand3D, uv: np.ndarray) -> None:
    """Put one object over a random keypoint of ``hand`` (uv: (21, 2) output pixels)."""
    j = rng.integers(0, len(uv))
    extent = float(np.max(uv.max(axis=0) - uv.min(axis=0)))
    depth = max(float(hand.joints[:, 2].min()) - rng.uniform(0.02, 0.12), 0.05)
    render.draw_occluder(
        canvas, rng, uv[j] + rng.normal(0.0, 0.1 * extent, 2), rng.uniform(0.1, 0.3) * extent, depth
    )


@dataclass(frozen=True)
class FreiHANDSample:
    """One rendered FreiHAND sample: ``images`` 4 x (S, S, 3) uint8 in version order, ``mask``
    (S, S) uint8 0/255, ``xyz`` (21, 3) float64 metres, ``K`` (3, 3) float64."""

    images: tuple[np.ndarray, ...]
    mask: np.ndarray
    xyz: np.ndarray
    K: np.ndarray


def render_freihand_sample(cfg: FreiHANDConfig, seed: int, index: int) -> FreiHANDSample:
    """Render unique sample ``index``: one right hand, drawn once, over four backgrounds."""
    rng = np.random.default_rng([seed, DATASET_CODES["freihand"], index])
    size = cfg.image_size
    centre = size / 2.0
    K = intrinsics(
        rng.uniform(*cfg.focal_px),
        centre + rng.uniform(-cfg.principal_jitter_px, cfg.principal_jitter_px),
        centre + rng.uniform(-cfg.principal_jitter_px, cfg.principal_jitter_px),
    )
    skin = render.sample_skin(rng)
    hand = _place(
        rng,
        sample_pose(rng, is_left=False),
        K,
        centre_px=centre + rng.uniform(-cfg.centre_jitter_px, cfg.centre_jitter_px, size=2),
        size_px=rng.uniform(*cfg.hand_size_px),
        skin=skin,
        arm_colour=_arm_colour(rng, skin, 0.3),
        upper_arm=False,
        # Long enough to leave the frame: FreiHAND shows the forearm running out of the image.
        forearm=0.45,
    )
    canvas = render.Canvas.for_camera(
        size, K, supersample=cfg.supersample, light=render.sample_light(rng), ambient=rng.uniform(0.4, 0.6)
    )
    render.draw_hand(canvas, hand)
    if rng.uniform() < cfg.occluder_prob:
        _occlude(canvas, rng, hand, project(hand.joints, K))
    premultiplied, alpha = render.downsample(canvas)
    s = cfg.supersample
    is_hand = canvas.label >= render.LEFT_LABELS[0]
    mask = np.where(is_hand.reshape(size, s, size, s).mean(axis=(1, 3)) >= 0.5, 255, 0).astype(np.uint8)

    backgrounds = [render.green_screen(rng, size)]
    backgrounds += [render.random_background(rng, size) for _ in FREIHAND_VERSIONS[1:]]
    images = [render.composite(premultiplied, alpha, bg) for bg in backgrounds]
    # Only the last version gets a global colour change, so the first three share the hand pixels.
    images[-1] = render.colour_treatment(rng, images[-1])
    return FreiHANDSample(images=tuple(images), mask=mask, xyz=hand.joints, K=K)


@dataclass(frozen=True)
class RHDSample:
    """One rendered RHD sample: ``color`` (S, S, 3) uint8, ``mask`` (S, S) uint8 labels 0..33,
    ``depth`` (S, S) float32 metres, ``anno`` the pickle entry (float32 arrays, RHD order)."""

    color: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    anno: dict[str, np.ndarray]


def render_rhd_sample(cfg: RHDConfig, seed: int, split: str, index: int) -> RHDSample:
    """Render RHD sample ``index`` of ``split``: a left and a right hand of one person."""
    rng = np.random.default_rng([seed, DATASET_CODES[f"rhd_{split}"], index])
    size = cfg.image_size
    K = intrinsics(rng.uniform(*cfg.focal_px), size / 2.0, size / 2.0)
    skin = render.sample_skin(rng)
    arm_colour = _arm_colour(rng, skin, 0.6)
    size_left = rng.uniform(*cfg.hand_size_px)
    sizes = (size_left, float(np.clip(size_left * rng.uniform(*cfg.size_ratio), *cfg.hand_size_px)))
    hands: list[render.Hand3D] = []
    for is_left, size_px in zip((True, False), sizes, strict=True):
        if not is_left and rng.uniform() < cfg.near_prob:
            c = hands[0].joints.mean(axis=0)
            uv_left = project(c[None], K)[0]
            centre_px = uv_left + rng.normal(0.0, 0.6 * size_px, size=2)
        elif rng.uniform() < cfg.edge_prob:
            # Straddle a random border, so that part of the hand leaves the frame.
            centre_px = rng.uniform(0.0, size, size=2)
            axis = rng.integers(0, 2)
            centre_px[axis] = rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 0.35) * size_px + (
                0.0 if rng.uniform() < 0.5 else size
            )
        else:
            margin = 0.6 * size_px
            centre_px = rng.uniform(margin, size - margin, size=2)
        pose = sample_pose(rng, is_left=is_left)
        hands.append(
            _place(
                rng,
                pose,
                K,
                centre_px=centre_px,
                size_px=size_px,
                skin=skin,
                arm_colour=arm_colour,
                upper_arm=True,
                forearm=0.26,
            )
        )
    canvas = render.Canvas.for_camera(
        size, K, supersample=cfg.supersample, light=render.sample_light(rng), ambient=rng.uniform(0.4, 0.6)
    )
    for hand in hands:
        render.draw_hand(canvas, hand)
    for hand in hands:
        for _ in range(2):
            if rng.uniform() < cfg.occluder_prob:
                _occlude(canvas, rng, hand, project(hand.joints, K))
    visible = [render.visibility(canvas, hand) for hand in hands]

    premultiplied, alpha = render.downsample(canvas)
    color = render.composite(premultiplied, alpha, render.random_background(rng, size, sensor_noise=False))
    mask, depth = render.sample_buffers(canvas)
    # The backdrop is a far, slightly tilted plane (depth stays below RHD's 5 m encoding limit).
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    far = rng.uniform(2.0, 4.0) + rng.uniform(-0.5, 0.5) * xs + rng.uniform(-0.5, 0.5) * ys
    depth = np.where(np.isfinite(depth), depth, far).astype(np.float32)

    K32 = K.astype(np.float32)
    xyz = np.concatenate([hands[0].joints[RHD_TO_COMMON], hands[1].joints[RHD_TO_COMMON]]).astype(np.float32)
    vis = np.concatenate([visible[0][RHD_TO_COMMON], visible[1][RHD_TO_COMMON]]).astype(np.float32)
    # uv from the stored float32 values, so that K @ xyz reproduces the file's uv to float precision.
    uv = project(xyz.astype(np.float64), K32.astype(np.float64))
    uv_vis = np.concatenate([uv, vis[:, None]], axis=1).astype(np.float32)
    return RHDSample(color=color, mask=mask, depth=depth, anno={"xyz": xyz, "uv_vis": uv_vis, "K": K32})


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RHD depth image of (H, W) metres: depth = (R * 256 + G) / 65535 * 5.0."""
    v = np.clip(np.rint(np.asarray(depth_m, dtype=np.float64) / 5.0 * 65535.0), 0, 65535).astype(np.int64)
    out = np.zeros((*v.shape, 3), dtype=np.uint8)
    out[..., 0] = v >> 8
    out[..., 1] = v & 0xFF
    return out


# ---------------------------------------------------------------------------------------------
# Workers: each renders one sample and writes its files; only small labels travel back.


def _freihand_job(job: tuple[FreiHANDConfig, int, int]) -> dict[str, Any]:
    cfg, seed, index = job
    sample = render_freihand_sample(cfg, seed, index)
    root = Path(cfg.root) / "training"
    for version, image in enumerate(sample.images):
        Image.fromarray(image, mode="RGB").save(
            root / "rgb" / f"{version * cfg.n_unique + index:08d}.jpg", quality=cfg.jpeg_quality
        )
    Image.fromarray(sample.mask, mode="L").save(root / "mask" / f"{index:08d}.jpg", quality=cfg.jpeg_quality)
    uv = project(sample.xyz, sample.K)
    return {
        "xyz": sample.xyz.tolist(),
        "K": sample.K.tolist(),
        "size_px": float(np.max(uv.max(axis=0) - uv.min(axis=0))),
        "in_frame": int(np.sum(np.all((uv >= 0) & (uv <= cfg.image_size - 1), axis=1))),
    }


def _rhd_job(job: tuple[RHDConfig, int, str, int]) -> dict[str, Any]:
    cfg, seed, split, index = job
    sample = render_rhd_sample(cfg, seed, split, index)
    root = Path(cfg.root) / split
    name = f"{index:05d}.png"
    # zlib level 3: within ~15 % of the default's size at less than half its time.
    Image.fromarray(sample.color, mode="RGB").save(root / "color" / name, compress_level=3)
    Image.fromarray(sample.mask, mode="L").save(root / "mask" / name, compress_level=3)
    Image.fromarray(encode_depth(sample.depth), mode="RGB").save(root / "depth" / name, compress_level=3)
    uv = sample.anno["uv_vis"][:, :2].reshape(2, 21, 2)
    return {"anno": sample.anno, "size_px": np.max(uv.max(axis=1) - uv.min(axis=1), axis=1).tolist()}


def _run(
    job: Callable[[Any], dict[str, Any]], jobs: list, workers: int, desc: str, progress: bool
) -> list[dict[str, Any]]:
    """Results of ``job`` over ``jobs`` in order, on ``workers`` processes, with a progress bar."""
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress)
    results: list[dict[str, Any]] = []
    with bar:
        if workers <= 1:
            it: Iterable = map(job, jobs)
            for r in it:
                results.append(r)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for r in pool.map(job, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                    results.append(r)
                    bar.update()
    return results


def _canonical(entry: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rebuild an annotation entry from this process's own objects.

    Keys and arrays that come back from worker processes are fresh objects, not the interned strings
    and shared dtypes of an in-process run, which changes the pickle's memo references and so its
    bytes; rebuilt entries pickle the same whatever the worker count. float32 -> float -> float32 is
    exact.
    """
    return {key: np.array(entry[key].tolist(), dtype=np.float32) for key in ("xyz", "uv_vis", "K")}


def _prepare_root(root: Path, subdirs: Iterable[str], settings: dict[str, Any]) -> None:
    """Create ``root`` fresh for writing, refusing to touch a directory we did not create.

    A regeneration with fewer samples must not leave stale images behind (readers count files), so
    our own previous output is removed first; anything else at ``root`` (e.g. the real dataset) is
    left alone and reported.
    """
    if root.exists() and any(root.iterdir()):
        if not (root / _MARKER).is_file():
            raise FileExistsError(
                f"{root} exists, is not empty and was not written by the synthetic generator; "
                "refusing to overwrite it"
            )
        for sub in subdirs:
            shutil.rmtree(root / sub.split("/")[0], ignore_errors=True)
    for sub in subdirs:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps(settings, indent=1, sort_keys=True))


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(a.min()), 2),
        "median": round(float(np.median(a)), 2),
        "max": round(float(a.max()), 2),
    }


def generate_freihand(
    cfg: FreiHANDConfig, *, seed: int, workers: int = 2, progress: bool = True
) -> dict[str, Any]:
    """Render and write the synthetic FreiHAND training set; return a JSON-able summary."""
    root = Path(cfg.root)
    _prepare_root(root, ["training/rgb", "training/mask"], {"seed": seed, **asdict(cfg)})
    for name in ("training_xyz.json", "training_K.json"):
        (root / name).unlink(missing_ok=True)
    jobs = [(cfg, seed, i) for i in range(cfg.n_unique)]
    results = _run(_freihand_job, jobs, workers, "synthetic FreiHAND", progress)
    (root / "training_xyz.json").write_text(json.dumps([r["xyz"] for r in results]))
    (root / "training_K.json").write_text(json.dumps([r["K"] for r in results]))
    in_frame = np.array([r["in_frame"] for r in results])
    return {
        "root": str(root),
        "seed": seed,
        "n_unique": cfg.n_unique,
        "n_images": len(FREIHAND_VERSIONS) * cfg.n_unique,
        "n_masks": cfg.n_unique,
        "versions": list(FREIHAND_VERSIONS),
        "image_size": cfg.image_size,
        "hand_size_px": _stats([r["size_px"] for r in results]),
        "samples_with_keypoints_out_of_frame": int(np.sum(in_frame < 21)),
        "mean_keypoints_in_frame": round(float(in_frame.mean()), 3),
    }


def generate_rhd(cfg: RHDConfig, *, seed: int, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Render and write the synthetic RHD training and evaluation sets; return a JSON-able summary."""
    root = Path(cfg.root)
    subdirs = [f"{split}/{kind}" for split in RHD_SPLITS for kind in ("color", "mask", "depth")]
    _prepare_root(root, subdirs, {"seed": seed, **asdict(cfg)})
    summary: dict[str, Any] = {"root": str(root), "seed": seed, "image_size": cfg.image_size}
    for split, n in zip(RHD_SPLITS, (cfg.n_training, cfg.n_evaluation), strict=True):
        jobs = [(cfg, seed, split, i) for i in range(n)]
        results = _run(_rhd_job, jobs, workers, f"synthetic RHD {split}", progress)
        anno = {i: _canonical(r["anno"]) for i, r in enumerate(results)}
        with open(root / split / f"anno_{split}.pickle", "wb") as fh:
            pickle.dump(anno, fh, protocol=4)
        n_visible = np.array([[a["uv_vis"][:21, 2].sum(), a["uv_vis"][21:, 2].sum()] for a in anno.values()])
        n_visible = n_visible.reshape(-1)
        summary[split] = {
            "n_images": n,
            "n_hands": int(n_visible.size),
            f"n_hands_lt{MIN_VISIBLE}_visible": int(np.sum(n_visible < MIN_VISIBLE)),
            f"fraction_hands_lt{MIN_VISIBLE}_visible": round(float(np.mean(n_visible < MIN_VISIBLE)), 4)
            if n
            else 0.0,
            "mean_visible_keypoints": round(float(n_visible.mean()), 3) if n else 0.0,
            "hand_size_px": _stats([s for r in results for s in r["size_px"]]) if n else {},
        }
    return summary
