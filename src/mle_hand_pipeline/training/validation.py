"""Checks of the ``model`` and ``train`` parameter blocks before anything runs or is written.

Each problem is reported with the parameter's full path (``rhd.train.lr``) and the value given, all
problems of a block in one :class:`ParameterError`. The project's Kedro hook runs these checks before
a pipeline starts (``hooks.ValidateRun``); :func:`~.runs.train_method` runs them too, for
callers outside Kedro.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from mle_hand_pipeline.parameters import ParameterError, check_block, describe
from mle_hand_pipeline.training.checkpoint import ModelSpec, check_warm_start
from mle_hand_pipeline.training.engine import TrainConfig
from mle_hand_pipeline.training.label_noise import LabelNoise

logger = logging.getLogger(__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class BlockChecker:
    """Collects problems of one block as ``<prefix>.<key> <requirement>, got <value>``."""

    def __init__(self, block: dict[str, Any], prefix: str):
        self.block, self.prefix, self.problems = block, prefix, []

    def require(self, key: str, ok: Callable[[Any], bool], requirement: str) -> None:
        if key in self.block and not ok(self.block[key]):
            self.fail(key, requirement)

    def fail(self, key: str, requirement: str) -> None:
        self.problems.append(f"{self.prefix}.{key} {requirement}, got {describe(self.block.get(key))}")

    def unknown_keys(self, known: set[str]) -> None:
        for key in sorted(set(self.block) - known):
            self.problems.append(f"{self.prefix}.{key} is not a parameter; known: {', '.join(sorted(known))}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ParameterError(self.problems)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _positive_number(value: Any) -> bool:
    return _is_number(value) and value > 0


def validate_model_params(block: dict[str, Any], prefix: str = "model") -> ModelSpec:
    """Raise :class:`ParameterError` naming every invalid key of a ``model`` block: the keys and
    constraints of :class:`~.checkpoint.ModelSpec`, and the checkpoint it starts from (the file exists
    and fits: another backbone, or a partial load without ``init_partial``, is refused before the run).
    Returns the block as a :class:`~.checkpoint.ModelSpec`."""
    spec = check_block(ModelSpec, block, prefix)
    if spec.init_checkpoint is None:
        return spec
    if not Path(spec.init_checkpoint).is_file():
        raise ParameterError(
            [
                f"{prefix}.init_checkpoint must be null or the path of an existing best.pt/last.pt, "
                f"got {describe(spec.init_checkpoint)}"
            ]
        )
    try:
        check_warm_start(spec)
    except ValueError as error:
        raise ParameterError([f"{prefix}.init_checkpoint: {error}"]) from None
    return spec


def validate_train_params(block: dict[str, Any], prefix: str = "train") -> TrainConfig:
    """Raise :class:`ParameterError` naming every invalid key of a ``train`` block: the keys and
    constraints of :class:`~.engine.TrainConfig` and :class:`~.label_noise.LabelNoise`, and the devices
    this machine has.

    ``devices`` as an integer N means N CUDA GPUs: on a machine without CUDA that is an error (it used
    to start N CPU processes silently); ``cpu:N`` asks for N CPU processes explicitly. Returns the
    block but its ``label_noise`` as a :class:`~.engine.TrainConfig`.
    """
    block = dict(block or {})
    problems: list[str] = []
    try:
        config = check_block(TrainConfig, {k: v for k, v in block.items() if k != "label_noise"}, prefix)
    except ParameterError as error:
        problems += error.problems
    else:
        _check_devices(config.devices, prefix, problems)
        if any(m > config.epochs for m in config.lr_milestones):
            logger.warning(
                "%s.lr_milestones %s: milestones after epoch %s (%s.epochs) never lower the learning rate",
                prefix,
                list(config.lr_milestones),
                config.epochs,
                prefix,
            )
    noise = block.get("label_noise") or {}
    if not isinstance(noise, dict):
        problems.append(f"{prefix}.label_noise must be a mapping, got {describe(noise)}")
    else:
        unknown = sorted(set(noise) - {f.name for f in fields(LabelNoise)})
        if unknown:
            problems.append(f"{prefix}.label_noise: unknown key(s) {unknown}")
        else:
            try:
                LabelNoise(**noise)
            except (TypeError, ValueError) as error:
                problems.append(f"{prefix}.{error}")
    if problems:
        raise ParameterError(problems)
    return config


def _check_devices(devices: str | int, prefix: str, problems: list[str]) -> None:
    if isinstance(devices, str) and devices.startswith("cpu:"):
        count = devices.partition(":")[2]
        if not (count.isdigit() and int(count) >= 1):
            problems.append(f"{prefix}.devices must be 'cpu:N' with N >= 1, got {describe(devices)}")
        elif int(count) > (os.cpu_count() or 1):
            logger.warning(
                "%s.devices=%s: more processes than the %d CPU cores", prefix, devices, os.cpu_count()
            )
        return
    if not isinstance(devices, int):
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices > available:
        problems.append(
            f"{prefix}.devices asks for {devices} CUDA GPUs but {available} are available; use 'auto' "
            f"(every GPU, else one CPU process) or 'cpu:{devices}' for {devices} CPU processes"
        )


# ---------------------------------------------------------------------------------------------------
# The preprocess block (evaluate and predict: mle_hand_pipeline.parameters; compare: grid.cells)
# ---------------------------------------------------------------------------------------------------

_PREPROCESS_COMMON = {"seed", "min_visible", "on_bad_sample", "workers", "crop", "grid"}
PREPROCESS_KEYS = {
    "rhd": _PREPROCESS_COMMON | {"parts", "val_ratio"},
    "freihand": _PREPROCESS_COMMON | {"split_ratios", "use_evaluation_set"},
}


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def validate_preprocess_params(block: dict[str, Any], prefix: str = "preprocess") -> None:
    """Raise :class:`ParameterError` naming every unknown or invalid key of a ``preprocess`` block
    (``rhd.preprocess``, ``freihand.preprocess``, or the overrides of ``pretrain_rhd.preprocess``)."""
    from mle_hand_pipeline.datasets.cropping import CropSettings

    check = BlockChecker(dict(block or {}), prefix)
    dataset = next((d for d in PREPROCESS_KEYS if d in prefix.split(".")[0].split("_")), None)
    check.unknown_keys(PREPROCESS_KEYS[dataset] if dataset else set().union(*PREPROCESS_KEYS.values()))
    check.require("on_bad_sample", lambda v: v in ("raise", "skip"), "must be one of raise, skip")
    check.require("workers", _positive_int, "must be an integer >= 1")
    check.require("min_visible", _non_negative_int, "must be an integer >= 0")
    check.require("seed", _is_int, "must be an integer")
    check.require("val_ratio", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check.require(
        "parts",
        lambda v: isinstance(v, list | tuple) and v and set(v) <= {"training", "evaluation"},
        "must list training and/or evaluation",
    )
    check.require(
        "split_ratios",
        lambda v: (
            isinstance(v, dict) and set(v) == {"train", "val", "test"} and all(map(_is_number, v.values()))
        ),
        "must be {train: r, val: r, test: r}",
    )
    check.require(
        "use_evaluation_set", lambda v: v == "auto" or isinstance(v, bool), "must be auto, true or false"
    )
    for key, known in (("crop", {f.name for f in fields(CropSettings)}), ("grid", {"n", "ncols", "seed"})):
        sub = check.block.get(key)
        if sub is None:
            continue
        if not isinstance(sub, dict):
            check.fail(key, "must be a mapping")
            continue
        sub_check = BlockChecker(sub, f"{prefix}.{key}")
        sub_check.unknown_keys(known)
        if key == "crop":
            sub_check.require("size", lambda v: _is_int(v) and v >= 8, "must be an integer >= 8 (pixels)")
            sub_check.require("scale", _positive_number, "must be a positive number")
            sub_check.require("mirror_left", _bool, "must be true or false")
            sub_check.require("image_format", lambda v: v in ("jpg", "png"), "must be one of jpg, png")
        check.problems += sub_check.problems
    check.raise_if_any()


def dotted_keys(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested parameter mapping as ``{"a.b.c": value}`` (``--params`` syntax); lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(dotted_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unknown_parameter_blocks(runtime: dict[str, Any], configured: dict[str, Any]) -> list[str]:
    """Problems of ``--params`` keys whose first or second name the configuration does not have
    (``rhd.trian.epochs``: the block ``trian``; ``rhdd.train.epochs``), each with the names it has and the
    closest one. Keys inside a block are the block validators' (they know the optional keys).

    Args:
        runtime: the run's ``--params``, nested or dotted (``{"rhd": {"trian": {"epochs": 1}}}``).
        configured: the parameters of the run's configuration without ``--params``.
    """
    problems = []
    for key in sorted(dotted_keys(runtime)):
        names, node, path = key.split("."), configured, []
        for name in names[:2]:
            if not isinstance(node, dict):
                break
            if name not in node:
                where = ".".join(path) or "the configuration"
                known = sorted(str(k) for k in node if not str(k).startswith("_"))  # `_x`: YAML anchors
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {'.'.join([*path, close[0]])}?)" if close else ""
                problems.append(f"{key}: {where} has no '{name}'{hint}; it has: {', '.join(known)}")
                break
            node, path = node[name], [*path, name]
    return problems
