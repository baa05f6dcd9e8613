"""The training loop: one process per device, PyTorch DDP when there are several.

Determinism: the model is initialised from ``seed``; each epoch's sample order comes from a
``DistributedSampler`` seeded with ``seed`` and the epoch, and each batch's augmentation from a
generator seeded with (seed, epoch, step, rank). Nothing depends on global RNG state or on the
number of loader workers, so a run resumed from a checkpoint repeats an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pydantic import field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from mle_hand_pipeline.methods import method_of
from mle_hand_pipeline.parameters import STRICT_BLOCK, check_block, execution_only, setting
from mle_hand_pipeline.training.augment import AugmentSettings, prepare_batch
from mle_hand_pipeline.training.checkpoint import (
    ModelSpec,
    check_resumable,
    load_checkpoint,
    save_atomic,
    warm_start,
)
from mle_hand_pipeline.training.data import DeviceBatches, HandCrops, fits_on_device
from mle_hand_pipeline.training.inference import autocast_context, score_crops
from mle_hand_pipeline.training.progress import StepProgress
from mle_hand_pipeline.training.run_dirs import BEST_CHECKPOINT, LAST_CHECKPOINT

logger = logging.getLogger(__name__)


# train.compile: off | loss (torch.compile of the loss and its flows) | all (network + loss).
COMPILE_MODES = ("off", "loss", "all")
PRECISIONS = ("auto", "bf16", "fp32")
VERIFY_CROPS = ("quick", "full")  # datasets.crop_store.CropStore.verify


@pydantic_dataclass(frozen=True, config=STRICT_BLOCK)
class TrainConfig:
    """The ``train`` parameter block but its ``label_noise`` (applied to the labels, not here): the one
    place its keys, defaults (the paper's), constraints and help live; ``conf/base/parameters_train.yml``
    holds the CPU demo's values. Keys marked execution-only change how a run executes, not its numbers
    (the comparison grid leaves them out of a cell's fingerprint)."""

    epochs: int = setting(120, "epochs to train", "must be an integer >= 1 (0 would train nothing)", ge=1)
    batch_size: int = setting(
        128, "crops per optimiser step (over all devices)", "must be an integer >= 2", ge=2
    )
    lr: float = setting(
        1e-3,
        "the Adam learning rate",
        "must be a positive number (the Adam learning rate)",
        gt=0,
        allow_inf_nan=False,
    )
    lr_milestones: tuple[int, ...] = setting(
        (90,), "epochs after which lr is multiplied by lr_gamma", "must be a list of epochs (integers >= 1)"
    )
    lr_gamma: float = setting(
        0.1, "the learning-rate factor at each milestone", "must be a positive number", gt=0
    )
    weight_decay: float = setting(
        0.0, "Adam's weight decay", "must be a number >= 0", ge=0, allow_inf_nan=False
    )
    seed: int = setting(0, "initialisation, sample order and augmentation", "must be an integer")
    devices: str | int = execution_only(
        "auto",
        "auto: every CUDA GPU (DDP), else the CPU; cpu; cpu:N (N gloo processes); N: N CUDA GPUs",
        "must be 'auto', 'cpu', 'cpu:N' (N CPU processes) or N (N CUDA GPUs)",
    )
    precision: Literal["auto", "bf16", "fp32"] = setting(
        "auto", "auto: bf16 autocast on CUDA, fp32 on the CPU", f"must be one of {', '.join(PRECISIONS)}"
    )
    resume: bool | str = execution_only(
        False,
        "true: continue the newest interrupted run of the method; <run id>: that run; false: start afresh",
        "must be true, false or the run id of a run folder",
    )
    num_workers: int = execution_only(2, "DataLoader processes", "must be an integer >= 0", ge=0)
    data_on_device: Literal["auto"] | bool = setting(
        "auto",
        "auto: copy the training crops to the GPU once when they fit in a quarter of its free memory",
        "must be auto, true or false",
    )
    grad_clip: float = setting(
        5.0, "max gradient norm", "must be a positive number", gt=0, allow_inf_nan=False
    )
    max_nonfinite_steps: int = setting(
        20, "stop with an error after this many non-finite steps in a row", "must be an integer >= 1", ge=1
    )
    eval_batch_size: int = execution_only(
        64, "crops per validation forward pass", "must be an integer >= 1", ge=1
    )
    sigma_warmup_epochs: int = setting(
        0,
        "mle/rle: epochs whose sigma heads see detached features (0: the paper)",
        "must be an integer >= 0",
        ge=0,
    )
    compile: Literal["off", "loss", "all"] = setting(
        "off",
        "off | loss (torch.compile the loss and its flows) | all (network + loss)",
        f"must be one of {', '.join(COMPILE_MODES)}",
    )
    verify_crops: Literal["quick", "full"] = execution_only(
        "quick",
        "quick: size, header and sampled sha256 of each crop array; full: every byte",
        f"must be one of {', '.join(VERIFY_CROPS)}",
    )
    augment: AugmentSettings = setting(AugmentSettings(), "per-batch augmentation on the device")

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        return ("all" if value else "off") if isinstance(value, bool) else value  # YAML reads off as false

    @field_validator("lr_milestones", mode="before")
    @classmethod
    def _milestones(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in value
        ):
            raise ValueError("not a list of epochs")
        return tuple(value)

    @field_validator("resume")
    @classmethod
    def _run_id(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and (value == "" or "/" in value):
            raise ValueError("not a run id")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: str | int) -> str | int:
        if (isinstance(value, int) and value < 1) or (
            isinstance(value, str) and not (value in ("auto", "cpu") or value.startswith("cpu:"))
        ):
            raise ValueError("not a device setting")
        return value

    @field_validator("augment", mode="before")
    @classmethod
    def _augment(cls, value: Any) -> Any:
        if isinstance(value, dict):
            known = {f.name for f in fields(AugmentSettings)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
            return AugmentSettings(
                **{**value, **({"scale": tuple(value["scale"])} if "scale" in value else {})}
            )
        return value

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        """The ``train`` parameter block (its ``label_noise`` is applied to the labels, not here)."""
        return check_block(cls, {k: v for k, v in params.items() if k != "label_noise"}, "train")


@dataclass
class FitResult:
    history: pd.DataFrame
    best_checkpoint: Path
    last_checkpoint: Path


class TrainingModule(nn.Module):
    """Model and loss as one module, so one DDP wrapper synchronises the network and the flows."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor):
        output = self.model(images)
        return self.loss(output, target, visible)


class NonFiniteLossError(RuntimeError):
    pass


def resolve_devices(devices: str | int) -> tuple[str, int]:
    """``"auto"``: every CUDA GPU, else one CPU process; ``"cpu"``: one CPU process; ``"cpu:N"``: N CPU
    processes (gloo DDP, for tests); an int N: N CUDA GPUs (an error without them: ``cpu:N`` says it)."""
    cuda = torch.cuda.is_available()
    if devices == "auto":
        return ("cuda", torch.cuda.device_count()) if cuda else ("cpu", 1)
    if isinstance(devices, str) and devices.startswith("cpu"):
        return "cpu", int(devices.partition(":")[2] or 1)
    if isinstance(devices, int) and devices >= 1:
        available = torch.cuda.device_count() if cuda else 0
        if devices > available:
            raise ValueError(
                f"train.devices={devices} but {available} CUDA devices (cpu:{devices}: CPU processes)"
            )
        return "cuda", devices
    raise ValueError(f"train.devices must be 'auto', 'cpu', 'cpu:N' or a positive int, got {devices!r}")


def resolve_precision(precision: str, device_type: str) -> str:
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"train.precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision


def skips_steps_on_device(device: torch.device) -> bool:
    """Whether a non-finite step is skipped on the device (fused Adam's ``found_inf``) rather than by a
    host ``if``. On CUDA a host test of a GPU value waits for the queue to drain; on the CPU it costs
    nothing and the plain Adam keeps the CPU demo's numbers bit-identical (fused Adam rounds
    differently)."""
    return device.type == "cuda"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fit(
    spec: ModelSpec,
    config: TrainConfig,
    train_table: pd.DataFrame,
    val_table: pd.DataFrame,
    crops_dir: str | Path,
    checkpoint_dir: str | Path,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``spec``'s model with ``config``; returns the history and the checkpoint paths.

    ``on_epoch_end`` receives each epoch's history row on rank 0 (it must be picklable for DDP).
    Checkpoints: ``checkpoint_dir/last.pt`` (full training state, every epoch, atomically) and
    ``checkpoint_dir/best.pt`` (weights of the epoch with the lowest validation NME).
    """
    device_type, world_size = resolve_devices(config.devices)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = (
        world_size,
        _free_port(),
        device_type,
        spec,
        config,
        train_table,
        val_table,
        str(crops_dir),
        str(checkpoint_dir),
        on_epoch_end,
    )
    if world_size == 1:
        _worker(0, *args)
    else:
        workers = mp.spawn(_worker, args=args, nprocs=world_size, join=False)
        try:
            while not workers.join():
                pass
        except BaseException:  # Ctrl-C, SIGTERM (hooks.MarkInterruptedRuns) or a failed worker
            for process in workers.processes:  # would otherwise train on, and block this process's exit
                if process.is_alive():
                    process.terminate()
            raise
    last = load_checkpoint(checkpoint_dir / LAST_CHECKPOINT)
    return FitResult(
        pd.DataFrame(last["history"]), checkpoint_dir / BEST_CHECKPOINT, checkpoint_dir / LAST_CHECKPOINT
    )


def _worker(
    rank: int,
    world_size: int,
    port: int,
    device_type: str,
    spec: ModelSpec,
    config: TrainConfig,
    train_table: pd.DataFrame,
    val_table: pd.DataFrame,
    crops_dir: str,
    checkpoint_dir: str,
    on_epoch_end: Callable[[dict], None] | None,
) -> None:
    distributed = world_size > 1
    if distributed:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world_size)
        if device_type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    device = torch.device(f"cuda:{rank}" if device_type == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        Trainer(
            rank,
            world_size,
            device,
            spec,
            config,
            train_table,
            val_table,
            Path(crops_dir),
            Path(checkpoint_dir),
            on_epoch_end,
        ).run()
    finally:
        if distributed:
            dist.destroy_process_group()


class Trainer:
    """One process's share of a training run (rank 0 validates, logs and writes checkpoints)."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        device: torch.device,
        spec: ModelSpec,
        config: TrainConfig,
        train_table: pd.DataFrame,
        val_table: pd.DataFrame,
        crops_dir: Path,
        checkpoint_dir: Path,
        on_epoch_end: Callable[[dict], None] | None,
    ):
        self.rank, self.world_size, self.device = rank, world_size, device
        self.spec, self.config = spec, config
        self.precision = resolve_precision(config.precision, device.type)
        self.checkpoint_dir, self.on_epoch_end = checkpoint_dir, on_epoch_end
        self.is_main = rank == 0

        torch.manual_seed(config.seed)
        model = spec.build_model()
        if spec.init_checkpoint and not config.resume:
            warm_start(model, spec.init_checkpoint, log=self.is_main, allow_partial=spec.init_partial)
        self.module = TrainingModule(model, spec.build_loss()).to(device)
        if device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)
        # Module.compile() compiles in place: state-dict keys, checkpoints and DDP stay as they are.
        if config.compile == "all":
            self.module.compile()
        elif config.compile == "loss":
            self.module.loss.compile()
        self.wrapped = DistributedDataParallel(self.module) if world_size > 1 else self.module
        self.skip_on_device = skips_steps_on_device(device)
        self.optimizer = torch.optim.Adam(
            self.module.parameters(),
            lr=config.lr,
            weight_decay=config.weight_decay,
            fused=True if self.skip_on_device else None,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )

        self.train_set = HandCrops(train_table, crops_dir)
        self.val_set = HandCrops(val_table, crops_dir)
        per_rank_batch = config.batch_size // world_size
        if per_rank_batch < 2 or len(self.train_set) < config.batch_size:
            raise ValueError(
                f"train.batch_size={config.batch_size} over {world_size} process(es) needs at least 2 images "
                f"per process and at most {len(self.train_set)} (the training crops)"
            )
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed, drop_last=True
        )
        self.loader = self._loader(per_rank_batch)

        self.start_epoch = 0
        self.history: list[dict] = []
        self.best_nme = math.inf
        self.nonfinite_total = 0
        if config.resume:
            self._resume()

    def _loader(self, per_rank_batch: int) -> DataLoader | DeviceBatches:
        """Training batches: gathered on the device from crops copied there once (``data_on_device``), or
        read from the memory-mapped crop array by ``DataLoader`` workers. Same batches either way."""
        setting = self.config.data_on_device
        on_device = fits_on_device(self.train_set, self.device) if setting == "auto" else setting
        if self.is_main:
            logger.info(
                "training crops (%.0f MB) %s",
                len(self.train_set) * self.train_set.crop_size**2 * 3 / 2**20,
                f"copied to {self.device}" if on_device else "read from the memory-mapped crop array",
            )
        if on_device:
            return DeviceBatches(self.train_set, self.sampler, per_rank_batch, self.device)
        return DataLoader(
            self.train_set,
            batch_size=per_rank_batch,
            sampler=self.sampler,
            drop_last=True,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.config.num_workers > 0,
        )

    def _resume(self) -> None:
        path = self.checkpoint_dir / LAST_CHECKPOINT
        if not path.is_file():
            if self.is_main:
                logger.info("train.resume: no checkpoint at %s, starting from scratch", path)
            return
        check_resumable(self.checkpoint_dir, self.spec)
        state = load_checkpoint(path, map_location=self.device)
        self.module.load_state_dict(state["module"])
        # Keep this device's Adam implementation even if the checkpoint was written on another device.
        for group in state["optimizer"]["param_groups"]:
            group["fused"] = self.optimizer.param_groups[0]["fused"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        self.start_epoch = state["epoch"]
        self.history = list(state["history"])
        self.best_nme = state["best_nme"]
        self.nonfinite_total = state["nonfinite_total"]
        if self.is_main:
            logger.info("resumed from %s after epoch %d", path, self.start_epoch)

    def run(self) -> None:
        for epoch in range(self.start_epoch, self.config.epochs):
            row = self._train_epoch(epoch)
            if self.world_size > 1:
                # DDP re-broadcasts rank 0's BatchNorm statistics before every forward, so after the
                # last step the replicas' buffers differ by one batch; make them rank 0's again.
                for buffer in self.module.buffers():
                    dist.broadcast(buffer, src=0)
            row.update(self._calibrate_sigmas())
            if self.is_main:
                row.update(self._validate())
                self.history.append(row)
                self._save(epoch + 1, row)
                logger.info(
                    "epoch %d/%d  loss %.4f  val_nme %.4f  val_pck_0.2 %.3f  %.1f img/s  lr %.2g",
                    epoch + 1,
                    self.config.epochs,
                    row["train_loss"],
                    row["val_nme"],
                    row["val_pck_0.2"],
                    row["images_per_s"],
                    row["lr"],
                )
                if self.on_epoch_end is not None:
                    self.on_epoch_end(row)
            if self.world_size > 1:
                dist.barrier()
        if self.world_size > 1:
            self._check_replicas()

    def _calibrate_sigmas(self) -> dict[str, float]:
        """Copy the flows' RMS per unit of sigma into the model's ``sigma_scale``, so checkpoints, exports
        and evaluation report sigmas as predicted RMS errors (see ``losses/mle.py``). Returns the last
        stage's mean scale as ``sigma_scale`` for the epoch's metrics ({} for methods without sigmas)."""
        if not method_of(self.spec.method).has_sigmas:
            return {}
        scale = self.module.model.sigma_scale
        scale.copy_(self.module.loss.error_rms())
        return {"sigma_scale": float(scale[-1].mean())}

    def _check_replicas(self) -> None:
        """Fail loudly if DDP replicas drifted apart (they must hold bit-identical weights)."""
        state = self.module.state_dict()
        flat = torch.cat([state[k].detach().flatten().double() for k in sorted(state)])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        difference = (flat - reference).abs().max()
        dist.all_reduce(difference, op=dist.ReduceOp.MAX)
        if self.is_main:
            last = load_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT)
            last["replica_max_abs_diff"] = float(difference)
            save_atomic(last, self.checkpoint_dir / LAST_CHECKPOINT)
        if difference != 0:
            raise RuntimeError(
                f"DDP replicas differ after training (max abs difference {float(difference):.3g})"
            )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch; returns its history row. The loop never waits for the device except to show the
        loss (at most once a second), for the non-finite guard (every ``max_nonfinite_steps`` steps)
        and at the end: losses and counts accumulate on the device."""
        self.module.train()
        if method_of(self.spec.method).has_sigmas:
            self.module.model.detach_sigma_input = epoch < self.config.sigma_warmup_epochs
        self.sampler.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        device, limit = self.device, self.config.max_nonfinite_steps
        totals = None  # per-stage loss sums of the applied steps
        applied = torch.zeros((), device=device)
        skipped = torch.zeros((), dtype=torch.long, device=device)
        nonfinite_run = torch.zeros((), dtype=torch.long, device=device)
        longest_run = torch.zeros((), dtype=torch.long, device=device)
        started = time.perf_counter()
        first_step_s = None
        last = {}

        def shown() -> dict[str, str]:
            rate = (step + 1) * len(images) * self.world_size / (time.perf_counter() - started)
            return {"loss": f"{last['loss'].item():.3f}", "img_s": f"{rate:.1f}"}

        progress = StepProgress(
            len(self.loader), f"epoch {epoch + 1}/{self.config.epochs}", shown, enabled=self.is_main
        )
        for step, batch in enumerate(self.loader):
            generator = torch.Generator(device=device)
            generator.manual_seed(
                ((self.config.seed * 1_000_003 + epoch) * 1_000_003 + step) * 64 + self.rank
            )
            images, target, visible = prepare_batch(
                batch, self.spec.input_size, device, self.config.augment, generator
            )
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_context(device, self.precision):
                result = self.wrapped(images, target, visible)
            applied_now = self._backward_and_step(result.total)
            per_stage = torch.where(applied_now, result.per_stage.detach().float(), 0.0)
            totals = per_stage if totals is None else totals + per_stage
            applied += applied_now
            skipped += ~applied_now
            nonfinite_run = torch.where(applied_now, 0, nonfinite_run + 1)
            longest_run = torch.maximum(longest_run, nonfinite_run)
            last["loss"] = result.total.detach()
            if self.config.compile != "off" and step == 0:
                # The first step compiles: time it apart so images_per_s is the steady-state speed.
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                first_step_s = time.perf_counter() - started
                started = time.perf_counter()
            if (step + 1) % limit == 0 or step + 1 == len(self.loader):
                # Identical on every rank (the decision uses all-reduced values), so all ranks stop together.
                if int(longest_run) >= limit:
                    progress.close()
                    raise NonFiniteLossError(
                        f"{limit} training steps in a row had a non-finite loss or gradient "
                        f"(epoch {epoch + 1}, by step {step}); lower train.lr, raise model.loss.sigma_eps "
                        "or check the labels"
                    )
            progress.step()
        progress.close()
        elapsed = time.perf_counter() - started
        self.scheduler.step()
        steps_timed = len(self.loader) - (first_step_s is not None)
        steps = int(applied)
        per_stage_mean = (totals / max(steps, 1)).tolist() if steps else [math.nan]
        row = {
            "epoch": epoch + 1,
            "train_loss": float(sum(per_stage_mean)),
            "lr": lr,
            "images_per_s": steps_timed * self.loader.batch_size * self.world_size / elapsed,
            "nonfinite_steps": int(skipped),
        }
        if first_step_s is not None:
            row["compile_time_s"] = first_step_s
        self.nonfinite_total += row["nonfinite_steps"]
        row.update({f"loss_stage{t + 1}": value for t, value in enumerate(per_stage_mean)})
        return row

    def _backward_and_step(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip, Adam step, unless the loss or the gradient norm is non-finite on any rank.

        Returns whether the step was applied, as a bool tensor on the device. Skipping never reads a
        device value on CUDA (see :func:`skips_steps_on_device`)."""
        finite = torch.isfinite(loss.detach())
        if self.world_size > 1:
            finite = finite.float()
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            finite = finite.bool()
        self.optimizer.zero_grad(set_to_none=True)
        if self.skip_on_device:
            loss.backward()
            # Gradients are all-reduced by now, so the norm (and the decision) is the same on every rank.
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
            applied = finite & torch.isfinite(norm)
            self.optimizer.found_inf = (~applied).float()  # fused Adam leaves weights and state as they are
            self.optimizer.step()
            return applied
        if not finite:
            return torch.tensor(False)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        if not torch.isfinite(norm):
            return torch.tensor(False)
        self.optimizer.step()
        return torch.tensor(True)

    def _validate(self) -> dict[str, float]:
        scores = score_crops(
            self.module.model,
            self.val_set,
            self.spec.input_size,
            self.device,
            self.precision,
            batch_size=self.config.eval_batch_size,
        )
        return {f"val_{name}": value for name, value in scores.items()}

    def _save(self, epochs_done: int, row: dict) -> None:
        state = {
            "epoch": epochs_done,
            "spec": self.spec.checkpoint_dict(),
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            },
            "history": self.history,
            "best_nme": min(self.best_nme, row["val_nme"]),
            "nonfinite_total": self.nonfinite_total,
        }
        if row["val_nme"] < self.best_nme or not (self.checkpoint_dir / BEST_CHECKPOINT).exists():
            self.best_nme = min(self.best_nme, row["val_nme"])
            save_atomic(
                {
                    "spec": state["spec"],
                    "model": self.module.model.state_dict(),
                    "epoch": epochs_done,
                    "val": {k: v for k, v in row.items() if k.startswith("val_")},
                },
                self.checkpoint_dir / BEST_CHECKPOINT,
            )
        save_atomic(state, self.checkpoint_dir / LAST_CHECKPOINT)
