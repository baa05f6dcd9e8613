"""Does each stage refine the one before? Per-stage accuracy, feedback gradients and feedback use.

Trains one of the library's multi-stage models (mle, integral, heatmap_l2: ``SequentialHeatmapNet``;
cpm: ``CPM``) for a few hundred steps on preprocessed crops held in memory, with the library's model,
loss and augmentation (``prepare_batch``; the CPU demo's ``train.augment`` block), Adam, one thread, and
measures what decides whether stages 2..T can improve on stage 1:

- during training (every ``--log-every`` steps): per stage, the norm of the loss gradient that reaches
  the previous stage's maps through the feedback path (``fb_grad``) against the one from the stage's
  own loss (``own_grad``), and the gradient norms of the stage's feedback-input weights
  (``SequentialHeatmapNet``: the heatmap projection conv; CPM: the belief channels of its first conv)
  and feature-input weights, per weight (RMS), so the two paths compare;
- after training, on the test split in eval mode: per stage NME, PCK@0.1, PCK@0.2; how far stage t's
  prediction moves from stage t-1's (``step_nme``: mean normalised distance); and how much stage t
  uses its feedback: the same images with the fed-back maps taken from another image of the batch
  (``shuffled``) or zeroed (``zeroed``), and the normalised distance this moves stage t's prediction
  and its PCK@0.2 (if stage t ignores its feedback, neither changes).

    python benchmarks/bench_stages.py --method integral --steps 300
    python benchmarks/bench_stages.py --method integral --set head_channels=128 --name integral_wide
    python benchmarks/bench_stages.py --method cpm --steps 300
    python benchmarks/bench_stages.py --quick --hands H.parquet --crops DIR

``--set KEY=VALUE`` passes a keyword to ``methods.build_model`` (e.g. ``head_channels=128``; the
``feedback=softmax`` prototype of docs/stage_refinement.md is no longer in the model). Crops come
from ``rhd_preprocess`` (``--hands``/``--crops``; any crop size, resampled to ``--input-size``). Writes
``benchmarks/results/stages_<name>.json``. docs/stage_refinement.md has the figures and what they mean.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import Tensor, nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.evaluation.metrics import normalised_errors
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.models.cpm import CPM
from mle_hand_pipeline.models.outputs import PoseOutput
from mle_hand_pipeline.models.pose_net import SequentialHeatmapNet
from mle_hand_pipeline.training.augment import AugmentSettings, prepare_batch
from mle_hand_pipeline.training.data import HandCrops

PARAMETERS = _common.REPO / "conf/base/parameters_train.yml"


def staged_forward(model: nn.Module, images: Tensor, feedback=None) -> PoseOutput:
    """``model(images)`` with ``feedback(t, maps) -> maps`` replacing what stage t (>= 1, 0-based)
    receives from stage t-1 (identity when None), through forward pre-hooks on the stages: the model's
    own ``forward`` runs, so this cannot drift from it."""
    if feedback is None:
        return model(images)
    if isinstance(model, SequentialHeatmapNet):  # stage(features, previous maps, detach_sigma_input)

        def hook_for(t):
            return lambda stage, args: (args[0], feedback(t, args[1]), *args[2:])

    elif isinstance(model, CPM):  # stage(cat(features, previous beliefs)): features first
        f = model.features.out_channels

        def hook_for(t):
            return lambda stage, args: (torch.cat((args[0][:, :f], feedback(t, args[0][:, f:])), dim=1),)

    else:
        raise TypeError(f"{type(model).__name__} has no stages to measure")
    handles = [model.stages[t].register_forward_pre_hook(hook_for(t)) for t in range(1, len(model.stages))]
    try:
        return model(images)
    finally:
        for handle in handles:
            handle.remove()


def input_weight_grads(model: nn.Module, t: int) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of stage t's (>= 1, 0-based) feedback-input and feature-input weights (after backward)."""
    if isinstance(model, SequentialHeatmapNet):
        stage = model.stages[t]
        return stage.heatmap_proj[0].weight.grad, stage.feature_proj[0].weight.grad
    grad = model.stages[t][0][0].weight.grad  # (c, features + K, 7, 7): features first, then beliefs
    f = model.features.out_channels
    return (None, None) if grad is None else (grad[:, f:], grad[:, :f])


def rms(x: Tensor | None) -> float:
    return float("nan") if x is None else float(x.detach().pow(2).mean().sqrt())


def load_crops(table: pd.DataFrame, crops: Path) -> dict[str, Tensor]:
    """Every crop of ``table`` as one batch dict (decoded once: the steps then cost model time only)."""
    dataset = HandCrops(table, crops)
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def subset(batch: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {key: value[index] for key, value in batch.items()}


def keep_fed(fed: dict[int, Tensor], retain: bool, t: int, maps: Tensor) -> Tensor:
    """Feed stage t a separate node ``maps * 1``, kept in ``fed[t]``: its gradient is the feedback path's
    share of the gradient reaching stage t-1's maps (``retain``: keep it after backward)."""
    fed[t] = maps * 1.0
    if retain:
        fed[t].retain_grad()
    return fed[t]


def train(model, loss, data, args, augment, log_rows) -> float:
    """``args.steps`` Adam steps; appends gradient measurements to ``log_rows``; returns wall seconds."""
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=args.lr)
    order = torch.Generator().manual_seed(args.seed)
    n = len(data["image"])
    perm, cursor = torch.randperm(n, generator=order), 0
    model.train()
    start = time.perf_counter()
    for step in tqdm(range(args.steps), desc="training", unit="step", mininterval=2.0):
        if cursor + args.batch > n:
            perm, cursor = torch.randperm(n, generator=order), 0
        index, cursor = perm[cursor : cursor + args.batch], cursor + args.batch
        generator = torch.Generator(device=args.device).manual_seed(args.seed * 1_000_003 + step)
        batch = subset(data, index)
        images, target, visible = prepare_batch(batch, args.input_size, args.device, augment, generator)
        if hasattr(model, "detach_sigma_input"):
            model.detach_sigma_input = step < args.sigma_warmup_steps
        measure = step % args.log_every == 0 or step == args.steps - 1
        fed: dict[int, Tensor] = {}
        output = staged_forward(model, images, partial(keep_fed, fed, measure))
        if measure:
            output.heatmaps.retain_grad()
        result = loss(output, target, visible)
        optimizer.zero_grad(set_to_none=True)
        result.total.backward()
        if measure:
            row = {"step": step, "loss": float(result.total.detach())}
            for t in range(1, output.heatmaps.shape[1]):
                # The map tensor's own gradient (stage t-1's loss through the decoder) vs the feedback's.
                row[f"own_grad_s{t + 1}"] = float(output.heatmaps.grad[:, t - 1].norm())
                row[f"fb_grad_s{t + 1}"] = float(fed[t].grad.norm())
                fb_w, feat_w = input_weight_grads(model, t)
                row[f"fb_w_grad_rms_s{t + 1}"] = rms(fb_w)
                row[f"feat_w_grad_rms_s{t + 1}"] = rms(feat_w)
            log_rows.append(row)
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *loss.parameters()], 5.0)
        optimizer.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model, data, args) -> list[dict]:
    """Per-stage accuracy and feedback use on ``data`` (eval mode); one row per stage."""
    model.eval()
    n = len(data["image"])
    runs = {"normal": [], "shuffled": [], "zeroed": []}
    for lo in range(0, n, 64):
        batch = subset(data, torch.arange(lo, min(n, lo + 64)))
        images, _, _ = prepare_batch(batch, args.input_size, args.device, None, None)
        runs["normal"].append(staged_forward(model, images).coords.cpu())
        # Another image's maps (roll by one): the same kind of input, but about a different hand.
        runs["shuffled"].append(staged_forward(model, images, lambda t, m: m.roll(1, dims=0)).coords.cpu())
        runs["zeroed"].append(staged_forward(model, images, lambda t, m: torch.zeros_like(m)).coords.cpu())
    crop = float(args.crop_size)
    gt, visible, size = data["keypoints"].numpy(), data["visible"].numpy(), data["hand_size"].numpy()

    def errors(coords: Tensor, t: int) -> np.ndarray:
        return normalised_errors(((coords[:, t] + 0.5) * crop).numpy(), gt, size)

    def moved(a: Tensor, b: Tensor, t: int, s: int) -> float:
        d = normalised_errors(((a[:, t] + 0.5) * crop).numpy(), ((b[:, s] + 0.5) * crop).numpy(), size)
        return float(d[visible].mean())

    coords = {name: torch.cat(parts) for name, parts in runs.items()}
    rows = []
    for t in range(coords["normal"].shape[1]):
        err = errors(coords["normal"], t)[visible]
        row = {
            "stage": t + 1,
            "nme": float(err.mean()),
            "pck_0.1": float((err <= 0.1).mean()),
            "pck_0.2": float((err <= 0.2).mean()),
        }
        if t > 0:
            row["step_nme"] = moved(coords["normal"], coords["normal"], t, t - 1)
            for name in ("shuffled", "zeroed"):
                row[f"{name}_moves"] = moved(coords[name], coords["normal"], t, t)
                row[f"{name}_pck_0.2"] = float((errors(coords[name], t)[visible] <= 0.2).mean())
        rows.append(row)
    return rows


def pooled_location_error(samples: int = 2000, seed: int = 0) -> list[dict]:
    """What survives pooling a map to the feature grid (no model): Gaussian probability maps of spread s
    cells at random positions, summed over each 8x8 block (the stage's average pooling, times 64), the
    location read back as the mass-weighted block centre; RMS error per axis in crop sides."""
    rng = np.random.default_rng(seed)
    rows = []
    for side in (16, 32, 64):  # maps of 64, 128 and 256 px inputs
        centres = np.arange(side) + 0.5
        blocks = (np.arange(side // 8) + 0.5) * 8
        for spread in (1.0, 2.0, 4.0):
            errors = []
            for _ in range(samples):
                u = rng.uniform(0.1, 0.9, 2) * side
                d2 = (centres[None, :] - u[0]) ** 2 + (centres[:, None] - u[1]) ** 2
                p = np.exp(-d2 / (2 * spread**2))
                mass = (p / p.sum()).reshape(side // 8, 8, side // 8, 8).sum(axis=(1, 3))
                estimate = np.array([(mass.sum(0) * blocks).sum(), (mass.sum(1) * blocks).sum()])
                errors.append((estimate - u) / side)
            rms_error = float(np.sqrt(np.square(errors).mean()))
            rows.append({"map": side, "grid": side // 8, "spread_cells": spread, "rms_crop_sides": rms_error})
    return rows


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--hands", type=Path, default=_common.REPO / "data/03_primary/rhd_hands.parquet")
    p.add_argument("--crops", type=Path, default=_common.REPO / "data/02_intermediate/rhd_crops")
    p.add_argument("--method", default="integral", choices=["mle", "integral", "heatmap_l2", "cpm"])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--head-channels", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sigma-warmup-steps", type=int, default=0, help="mle: steps with detached sigma input")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", type=torch.device, default=torch.device("cpu"), help="e.g. cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="build_model keyword")
    p.add_argument("--name", default=None, help="result name (default: method and --set values)")
    args = p.parse_args()
    if args.quick:
        args.stages, args.head_channels, args.steps, args.batch, args.log_every = 2, 8, 2, 4, 1
    if not args.hands.is_file():
        sys.exit(f"{args.hands} not found: run `kedro run --pipelines=synthetic_data` and `rhd_preprocess`")
    torch.set_num_threads(args.threads)
    extra = {key: yaml.safe_load(value) for key, _, value in (s.partition("=") for s in args.set)}
    name = args.name or "_".join([args.method, *(s.replace("=", "-") for s in args.set)])

    hands = pd.read_parquet(args.hands)
    train_table = hands[hands["split"] == "train"].reset_index(drop=True)
    test_table = hands[hands["split"] == "test"].reset_index(drop=True)
    if args.quick:
        train_table, test_table = train_table.head(8), test_table.head(4)
    args.crop_size = int(hands["crop_size"].iloc[0])
    train_data, test_data = load_crops(train_table, args.crops), load_crops(test_table, args.crops)
    augment_block = dict(yaml.safe_load(PARAMETERS.read_text())["_train_cpu"]["augment"])
    augment = AugmentSettings(**{**augment_block, "scale": tuple(augment_block["scale"])})

    load_before = _common.loadavg()
    torch.manual_seed(args.seed)
    model = build_model(
        args.method, args.backbone, args.stages, args.input_size, head_channels=args.head_channels, **extra
    )
    model = model.to(args.device)
    loss = build_loss(args.method, args.stages).to(args.device)
    with torch.no_grad():  # the hooks must hand each stage exactly what the model's forward does
        probe = subset(test_data, torch.arange(2))
        probe, _, _ = prepare_batch(probe, args.input_size, args.device, None, None)
        model.eval()
        if not torch.equal(model(probe).coords, staged_forward(model, probe, lambda t, maps: maps).coords):
            raise RuntimeError("staged_forward's hooks change the model's inputs: update them to the model")
    log_rows: list[dict] = []
    wall = train(model, loss, train_data, args, augment, log_rows)
    rows = evaluate(model, test_data, args)
    path = _common.save(
        f"stages_{name}",
        args.out,
        {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "model_options": extra,
            "train_crops": len(train_table),
            "test_crops": len(test_table),
            "train_wall_s": wall,
            "stages": rows,
            "gradients": log_rows,
            "pooling_check": pooled_location_error(200 if args.quick else 2000),
        },
        load_before,
        args.quick,
    )
    grad_rows = [{k: v for k, v in r.items() if k == "step" or "_s2" in k or "_s3" in k} for r in log_rows]
    print(f"== stages_{name}  (load average before {load_before}, after {_common.loadavg()})")
    print(_common.table(rows, list(rows[-1])))
    print(_common.table(grad_rows[:: max(1, len(grad_rows) // 6)] + grad_rows[-1:]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
