"""The cells of a comparison and the command line of each: an ordinary ``train_<dataset>`` run.

A cell is one (method, training-label noise level, init, seed). Its run is
``kedro run --pipelines=train_<dataset> --params=<overrides>`` with the parent's environment and
runtime parameters plus the cell's overrides: ``model.method``, ``compare.loss_overrides[method]``
over ``model.loss``, ``model.init_checkpoint`` (the pretrained backbone for ``init: pretrained``),
``train.seed``, ``train.label_noise.*``, ``evaluate.log_model`` and the MLflow tags in
``tracking.tags`` (comparison name, cell key, the cell's settings fingerprint ``cell_config``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from mle_hand_pipeline.methods import RESNET_METHODS
from mle_hand_pipeline.parameters import CompareParams, EvaluateParams, execution_only_keys
from mle_hand_pipeline.training.engine import TrainConfig
from mle_hand_pipeline.training.label_noise import LabelNoise
from mle_hand_pipeline.training.validation import dotted_keys

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
# Keys that change how a run executes, not what it computes: left out of a cell's fingerprint, so a
# comparison may resume on another machine (more loader workers, another evaluation batch size).
EXECUTION_ONLY = {
    "train": execution_only_keys(TrainConfig),
    "evaluate": EvaluateParams.execution_only_keys(),
}
TAG_KEYS = ("comparison", "cell", "cell_config", "method", "seed", "noise", "init")


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``overrides`` are parameter keys relative to the dataset namespace
    (``model.method``, ``train.seed``, ...); ``config`` fingerprints everything the run computes with."""

    method: str
    noise: str
    init: str
    seed: int
    overrides: dict[str, Any] = field(compare=False)
    config: str = ""

    @property
    def key(self) -> str:
        return f"{self.method}-{self.noise}-{self.init}-s{self.seed}"

    def tags(self, comparison: str) -> dict[str, str]:
        """The MLflow tags of the cell's run (``TAG_KEYS``), all strings."""
        values = (comparison, self.key, self.config, self.method, self.seed, self.noise, self.init)
        return {k: str(v) for k, v in zip(TAG_KEYS, values, strict=True)}


def noise_name(level: Mapping[str, Any]) -> str:
    """A level's ``name``, else ``clean`` or e.g. ``j4f0.3o0.05`` (jitter px, fraction, outlier share)."""
    if level.get("name"):
        return str(level["name"])
    noise = LabelNoise.from_params({k: v for k, v in level.items() if k not in ("name", "seed")})
    if not noise.active:
        return "clean"
    return f"j{noise.jitter_px:g}f{noise.fraction:g}o{noise.outlier_fraction:g}"


def _fingerprint(settings: Mapping[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _without(block: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k not in keys}


def plan_cells(
    model: Mapping[str, Any],
    train: Mapping[str, Any],
    evaluate: Mapping[str, Any],
    compare: Mapping[str, Any] | CompareParams,
    pretrained_backbone: str | None,
) -> list[Cell]:
    """Every cell of ``compare`` (``methods``, ``noise_levels``, ``inits``, ``seeds``), ordered init,
    noise level, seed, method: an interrupted grid has whole seeds of the first levels done.
    A method without a ResNet (cpm) has no ``pretrained`` cells: the backbone would not apply, so they
    would repeat its ``scratch`` cells bit for bit.

    Args:
        model, train, evaluate: the dataset's parameter blocks, as the cells' runs will resolve them.
        compare: the ``compare`` block (see ``conf/base/parameters_compare.yml``).
        pretrained_backbone: ``model.init_checkpoint`` of ``init: pretrained`` cells.

    Raises:
        ValueError: naming the parameter, for an unknown method or init, duplicate or badly named
            noise levels, invalid label noise, a pretrained init without a backbone path, or a plan
            without cells (only methods without a ResNet, only pretrained).
    """
    compare = CompareParams.of(compare)
    methods, inits, seeds = list(compare.methods), list(compare.inits), list(compare.seeds)
    if "pretrained" in inits and not pretrained_backbone:
        raise ValueError("compare.inits has 'pretrained' but compare.pretrained_backbone is not set")
    loss_overrides = compare.loss_overrides
    base = {
        "model": _without(model, ("method", "init_checkpoint", "init_partial")),
        "train": _without(train, (*EXECUTION_ONLY["train"], "seed", "label_noise")),
        "evaluate": _without(evaluate, EXECUTION_ONLY["evaluate"]),
    }
    levels, names = [], []
    for level in compare.noise_levels or ({},):
        name = noise_name(level)
        if not NAME_PATTERN.match(name):
            raise ValueError(f"compare.noise_levels: name {name!r} must be letters, digits, '_' or '.'")
        if name in names:
            raise ValueError(f"compare.noise_levels: two levels are named {name!r}; give them names")
        noise = {k: v for k, v in level.items() if k != "name"}
        LabelNoise.from_params({k: v for k, v in noise.items() if k != "seed"})  # fail before training
        names.append(name)
        levels.append((name, noise))

    cells = []
    for init in inits:
        for name, noise in levels:
            for seed in seeds:
                for method in methods:
                    if init == "pretrained" and method not in RESNET_METHODS:
                        continue
                    label_noise = {
                        "fraction": 0.0,
                        "jitter_px": 0.0,
                        "outlier_fraction": 0.0,
                        # each seed also redraws which labels are corrupted, unless the level fixes it
                        "seed": seed,
                        **noise,
                    }
                    overrides = {
                        "model.method": method,
                        **{f"model.loss.{k}": v for k, v in (loss_overrides.get(method) or {}).items()},
                        "model.init_checkpoint": pretrained_backbone if init == "pretrained" else None,
                        "train.seed": seed,
                        **{f"train.label_noise.{k}": v for k, v in label_noise.items()},
                    }
                    config = _fingerprint({**base, "overrides": overrides})
                    cells.append(Cell(method, name, init, seed, overrides, config))
    if not cells:
        raise ValueError(
            f"compare: no cells: methods {methods} have no ResNet, so no 'pretrained' cells, and "
            "compare.inits has no 'scratch'"
        )
    return cells


def _read_back(text: str) -> Any:
    """What ``kedro run --params key=<text>`` makes of ``text`` (it parses an OmegaConf dot-list)."""
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"key={text}"]))["key"]


def _format_value(key: str, value: Any) -> str:
    """A value as ``kedro run --params`` (OmegaConf's dot-list) reads it back with the same type."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list | tuple):
        text = "[" + ",".join(_format_value(key, v) for v in value) + "]"
    else:
        text = str(value)
        if _read_back(text) != text:  # e.g. "1", "true", "1e5" would come back as a number or a bool
            text = "'" + text.replace("'", "''") + "'"
    if "," in text:
        raise ValueError(
            f"--params {key}={text}: `kedro run --params` splits on commas; set this value in a "
            "conf/<env>/parameters*.yml instead"
        )
    return text


def cell_params(
    cell: Cell,
    dataset: str,
    comparison: str,
    runtime_params: Mapping[str, Any] | None = None,
    compare: CompareParams | None = None,
    resume: str | None = None,
) -> dict[str, Any]:
    """The ``--params`` of a cell's run: the parent's runtime parameters (except its ``compare``
    block), then the cell's overrides, ``evaluate.log_model`` and ``evaluate.keep_checkpoints`` from
    ``compare`` (its defaults when None), ``evaluate.register_model`` null (a cell never registers a
    model version), ``tracking``, and ``train.resume`` = ``resume`` when the run continues that
    interrupted run of the cell (an execution-only key: same fingerprint)."""
    compare = compare or CompareParams()
    inherited = {
        k: v for k, v in dotted_keys(runtime_params or {}).items() if not k.startswith(f"{dataset}.compare.")
    }
    own = {
        **cell.overrides,
        "evaluate.log_model": compare.log_model,
        "evaluate.keep_checkpoints": compare.keep_checkpoints,
        "evaluate.register_model": None,  # a cell never registers a model version
        "tracking.run_name": f"{dataset}-{cell.key}",
        **{f"tracking.tags.{k}": v for k, v in {**cell.tags(comparison), "seed": cell.seed}.items()},
        **({"train.resume": resume} if resume else {}),
    }
    return {**inherited, **{f"{dataset}.{k}": v for k, v in own.items()}}


def kedro_command(
    params: Mapping[str, Any], dataset: str, env: str | None = None, kedro: Sequence[str] = ("kedro",)
) -> list[str]:
    """``kedro run --pipelines=train_<dataset> [--env=ENV] --params=k=v,...`` as an argument list."""
    pairs = ",".join(f"{k}={_format_value(k, v)}" for k, v in params.items())
    return [
        *kedro,
        "run",
        f"--pipelines=train_{dataset}",
        *([f"--env={env}"] if env else []),
        f"--params={pairs}",
    ]


RUN_OUTPUTS = "MLE_HAND_RUN_OUTPUTS"  # replaces `data` in a training run's report paths (catalog.yml)


def cell_outputs(dataset: str, comparison: str, cell: Cell) -> dict[str, str]:
    """The environment that gives ``cell``'s run its own folder (relative to the project) for its reports
    and its published model (``conf/base/catalog.yml``): cells running at once never write one another's
    ``test_metrics.json`` or curves, and no cell becomes ``<dataset>.model``, predict's default."""
    return {RUN_OUTPUTS: f"data/08_reporting/{dataset}/compare/{comparison}/cells/{cell.key}"}


def shell_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """``argv`` as one shell command line, after ``NAME=value`` assignments for ``env``."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()), shlex.join(argv)])


def validate_comparison_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"compare.name {name!r} must be letters, digits, '_' or '.'")
    return name
