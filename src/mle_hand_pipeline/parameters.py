"""Typed parameter blocks: one Pydantic model per block of ``conf/base/parameters_*.yml``.

A block's model is the one place its keys, defaults, constraints and help text live; the YAML files
hold values. A key that changes how a run executes, not what it computes, is marked
:func:`execution_only`: the comparison grid leaves those out of a cell's fingerprint
(:meth:`ParameterBlock.execution_only_keys`).

:meth:`ParameterBlock.check` turns Pydantic's errors into the project's one-line problems, each named
by the parameter's full path (``rhd.evaluate.checkpoint must be one of best, last, got 'newest'``):
the project's ``hooks.ValidateRun`` checks every block a pipeline reads before the run starts, and a
node turns its block into the typed object with :meth:`ParameterBlock.of`.

Why not Kedro's own typed ``params:`` inputs (``kedro.validation``, Kedro 1.7): kedro-mlflow 2.0.3
logs a node's parameter inputs to MLflow flattened only when they are dicts
(``kedro_mlflow/framework/hooks/utils.py``, ``_flatten_dict``); a converted block would be logged as one
parameter holding its repr, and the runs would lose their per-key parameters (``rhd.evaluate.checkpoint``)
that the MLflow UI compares and the grid's tests read.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from mle_hand_pipeline.methods import METHODS

T = TypeVar("T")
# A parameter block: unknown keys are refused, values are not coerced (YAML's "64" is not 64, `yes` is
# not true); for Pydantic models and dataclasses alike.
STRICT_BLOCK = ConfigDict(extra="forbid", strict=True)


class ParameterError(ValueError):
    """One or more parameters are invalid; ``problems`` has one line per parameter (``rhd.train.lr ...``)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid parameters:\n  " + "\n  ".join(self.problems))


def describe(value: Any) -> str:
    """``value`` as an error message shows it (a number YAML read as a string says so)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return repr(value)
        # YAML reads 1e-3 (no dot) as a string; --params values are YAML too.
        return f"{value!r} (a string: write numbers with a dot, e.g. 1.0e-3, or as 0.001)"
    return repr(value)


def execution_only(default: Any, description: str, requirement: str | None = None, **constraints: Any) -> Any:
    """A field that changes how a run executes (batch sizes, devices, what is logged or kept), never
    what it computes."""
    return setting(default, description, requirement, execution_only=True, **constraints)


def setting(
    default: Any,
    description: str,
    requirement: str | None = None,
    *,
    execution_only: bool = False,
    **constraints: Any,
) -> Any:
    """A field with its help text and, optionally, the requirement an error states (``must be an
    integer >= 1 (0 would train nothing)``) instead of Pydantic's wording."""
    extra = {"execution_only": execution_only, **({"requirement": requirement} if requirement else {})}
    return Field(default, description=description, json_schema_extra=extra, **constraints)


def schema_fields(schema: type) -> dict[str, FieldInfo]:
    """The fields of a Pydantic model or a Pydantic dataclass."""
    return (
        schema.model_fields
        if isinstance(schema, type) and issubclass(schema, BaseModel)
        else schema.__pydantic_fields__
    )


def execution_only_keys(schema: type) -> tuple[str, ...]:
    """The keys of ``schema`` marked :func:`execution_only`."""
    return tuple(name for name, field in schema_fields(schema).items() if _extra(field).get("execution_only"))


def check_block(schema: type[T], block: Mapping[str, Any] | None, prefix: str) -> T:
    """``block`` as ``schema`` (a Pydantic model or dataclass), else :class:`ParameterError` with every
    problem of the block, each named ``<prefix>.<key>``."""
    try:
        if issubclass(schema, BaseModel):
            return schema.model_validate(dict(block or {}))
        return schema(**dict(block or {}))  # a strict Pydantic dataclass takes its fields, not a dict
    except ValidationError as error:
        problems = [_problem(schema, prefix, detail) for detail in error.errors()]
        raise ParameterError(list(dict.fromkeys(problems))) from None  # a union's members say it once


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


class ParameterBlock(BaseModel):
    """A parameter block: unknown keys are refused, values are not coerced (YAML's ``"64"`` is not 64,
    ``yes`` is not true), and the object is immutable."""

    model_config = ConfigDict(**STRICT_BLOCK, frozen=True)
    block: ClassVar[str]  # the block's name in the configuration (``evaluate`` of ``rhd.evaluate``)

    @classmethod
    def execution_only_keys(cls) -> tuple[str, ...]:
        return execution_only_keys(cls)

    @classmethod
    def of(cls, block: Mapping[str, Any] | Self | None) -> Self:
        """``block`` (a node's ``params:`` input, already checked before the run) as this model; errors
        name its keys ``<block>.<key>`` (the dataset namespace is the hook's to add)."""
        return block if isinstance(block, cls) else cls.check(block, cls.block)

    @classmethod
    def check(cls, block: Mapping[str, Any] | None, prefix: str) -> Self:
        """``block`` as this model, else :class:`ParameterError` with every problem of the block, each
        named ``<prefix>.<key>``."""
        return check_block(cls, block, prefix)


def _problem(schema: type, prefix: str, detail: Mapping[str, Any]) -> str:
    location = [str(part) for part in detail["loc"]]
    path = ".".join([prefix, *location])
    kind, value = detail["type"], detail.get("input")
    fields = schema_fields(schema)
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{path} is not a parameter; known: {', '.join(sorted(fields))}"
    field = fields.get(location[0]) if location else None
    if kind == "missing":
        return f"{path} is required: {field.description if field is not None else 'no default'}"
    choices = _choices(field.annotation) if field is not None else ()
    if field is not None and _extra(field).get("requirement"):
        path = f"{prefix}.{location[0]}"  # not the member of a union that failed (bool, literal['auto'])
        requirement = _extra(field)["requirement"]
    elif kind == "literal_error" and choices:
        requirement = f"must be one of {', '.join(map(str, choices))}"
    elif kind in ("bool_type", "bool_parsing"):
        requirement = "must be true or false"
    elif kind == "value_error":
        requirement = str(detail["msg"]).removeprefix("Value error, ")
        if location and not requirement.startswith("must "):  # a finding, not a requirement
            return f"{path}: {requirement}"
    else:
        requirement = "must be " + _lower_first(str(detail["msg"]).removeprefix("Input should be "))
    if not location:  # a check across keys (a model validator): its message starts with the key
        return f"{prefix}.{requirement}"
    return f"{path} {requirement}, got {describe(value)}"


def _choices(annotation: Any) -> tuple[Any, ...]:
    for argument in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(argument) is Literal:
            return typing.get_args(argument)
    return ()


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# ---------------------------------------------------------------------------------------------------
# The blocks
# ---------------------------------------------------------------------------------------------------

_ALIAS = re.compile(r"[A-Za-z0-9_-]+")


class EvaluateParams(ParameterBlock):
    """``<dataset>.evaluate``: how a model is evaluated on the test split, by the train pipelines (their
    own checkpoint), the compare pipelines and ``evaluate_<dataset>`` (the model given here)."""

    block: ClassVar[str] = "evaluate"

    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="train and compare pipelines: the checkpoint evaluated and published, best (lowest "
        "validation NME) or last",
    )
    batch_size: int = execution_only(64, "crops per forward pass", ge=1)
    model: str | None = execution_only(
        None,
        "evaluate_<dataset> only: a checkpoint path, an MLflow run id or model URI (runs:/<run_id>/model, "
        "models:/<name>@<alias>), an MLflow model folder or a versioned checkpoint folder",
        min_length=1,
    )
    log_model: bool = execution_only(True, "train: log the MLflow model (+ ONNX, pyfunc)")
    keep_checkpoints: Literal["best", "all", "none"] = execution_only(
        "all",
        "train, after a run that ended well (node prune_checkpoints): all (best.pt + last.pt, resumable), "
        "best (last.pt removed) or none (both removed from the run folder)",
    )
    register_model: str | None = execution_only(
        None, "train: also register the logged model as a new version of this MLflow registered model"
    )
    register_alias: str | None = execution_only(
        None, "with register_model: point this alias (not latest or v<n>) at the new version"
    )

    @field_validator("register_alias")
    @classmethod
    def _alias_is_settable(cls, alias: str | None) -> str | None:
        if alias is not None and (not _ALIAS.fullmatch(alias) or re.fullmatch(r"(?i)v\d+|latest", alias)):
            raise ValueError("must be null or letters, digits, '_' or '-' (not latest, v<n>)")
        return alias

    @model_validator(mode="after")
    def _alias_needs_a_model(self) -> Self:
        if self.register_alias and not self.register_model:
            raise ValueError(
                "register_alias needs register_model (the registered model the alias points into)"
            )
        return self


class PredictParams(ParameterBlock):
    """``predict``: keypoints on new images (``kedro run --pipelines=predict``)."""

    block: ClassVar[str] = "predict"

    images: str | list[str] = Field(description="a glob (** allowed), a path, or a list of them")
    model: str = Field(
        "data/06_models/rhd/model.pt",
        description="a training checkpoint, an ONNX file, an MLflow run id, runs:/<run_id>[/model], "
        "models:/<name>/<version> or @<alias>, an MLflow model folder, or a versioned checkpoint folder "
        "(its newest version; the default: the model the latest train_rhd run published)",
        min_length=1,
    )
    box: str | tuple[float, float, float, float] | None = Field(
        None, description="x0,y0,x1,y1: the hand's box in source pixels for every image; null: the image"
    )
    box_scale: float = Field(1.5, description="crop side / box side (1.5 as in training)", gt=0)
    mirrored: bool = Field(False, description="mirror the crop first, as preprocessing does for left hands")
    backend: Literal["torch", "onnx"] = execution_only("torch", "torch or onnx (ONNX Runtime)")
    device: str = execution_only("auto", "a torch device; auto: the first CUDA GPU, else cpu", min_length=1)
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: a checkpoint's weights cast to bf16 once (torch backend)"
    )
    batch_size: int = execution_only(16, "crops per forward pass", ge=1)
    fail_on_error: bool = execution_only(True, "end the run with an error listing the images that failed")

    @field_validator("box", mode="before")
    @classmethod
    def _box_as_tuple(cls, box: Any) -> Any:
        return tuple(box) if isinstance(box, list) else box


INITS = ("scratch", "pretrained")
REPORT_DIRECTIONS = ("lower", "higher")


def _listed(value: Any) -> Any:
    """A list from YAML or the command line (``"mle+integral"``: ``--params`` splits on commas) as a
    tuple; anything else is left to the field's type."""
    if isinstance(value, str):
        return tuple(value.replace("+", " ").split())
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return tuple(value) if isinstance(value, list | tuple) else value


def _distinct_names(names: tuple[str, ...], valid: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise ValueError("is empty")
    if unknown := sorted(set(names) - set(valid)):
        raise ValueError(f"unknown {unknown}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"lists a value twice: {list(names)}")
    return names


class CompareParams(ParameterBlock):
    """``<dataset>.compare``: a grid of independent training runs, one per cell (method, training-label
    noise level, init, seed); see ``conf/base/parameters_compare.yml`` and docs/comparison.md."""

    block: ClassVar[str] = "compare"

    name: str | None = setting(
        None, "the MLflow tag `comparison` of every cell's run; null: compare_<dataset>"
    )
    methods: tuple[str, ...] = setting(
        ("mle", "heatmap_l2", "integral", "rle", "cpm"), "methods, as a list or a string mle+cpm"
    )
    seeds: tuple[int, ...] = setting((0, 1, 2), "train.seed of the cells", "must list distinct integers")
    inits: tuple[str, ...] = setting(("scratch",), "scratch | pretrained (compare.pretrained_backbone)")
    pretrained_backbone: str | None = setting(
        "data/06_models/{dataset}/pretrained_backbone.pt",
        "model.init_checkpoint of the pretrained cells: the backbone the pretraining pipeline "
        "(pretrain_rhd) writes",
    )
    loss_overrides: dict[str, dict[str, Any]] = setting(
        {"rle": {"residual": "laplace"}}, "per-method keys over model.loss"
    )
    noise_levels: tuple[dict[str, Any], ...] = setting(
        (
            {"name": "clean"},
            {"name": "jitter8", "fraction": 0.5, "jitter_px": 8.0},
            {"name": "outliers10", "outlier_fraction": 0.1},
            {"name": "outliers30", "outlier_fraction": 0.3},
        ),
        "training-label noise levels, each over train.label_noise (name, fraction, jitter_px, "
        "outlier_fraction, seed)",
    )
    keep_checkpoints: Literal["best", "all", "none"] = execution_only(
        "best", "each cell's run folder after it finished: best | all | none"
    )
    resume_interrupted: bool = execution_only(
        True, "a cell whose run was interrupted continues it from its last.pt; false: starts again"
    )
    jobs: int = execution_only(1, "cells run at once, each a process", "must be an integer >= 1", ge=1)
    log_model: bool = execution_only(False, "export each cell's MLflow model (pt2 + ONNX + pyfunc)")
    report_metrics: dict[str, Literal["lower", "higher"]] = execution_only(
        {
            "test_nme": "lower",
            "test_pck_0.2": "higher",
            "test_pck_0.05": "higher",
            "test_auc_0.2": "higher",
            "test_epe_px": "lower",
        },
        "metrics summarised over seeds in the report, and which direction is better",
        "must map metric names to lower or higher",
    )

    @field_validator("methods", "inits", "noise_levels", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_as_tuple(cls, value: Any) -> Any:
        value = _listed(value)
        if isinstance(value, tuple) and all(isinstance(v, str) and v.lstrip("-").isdigit() for v in value):
            return tuple(int(v) for v in value)  # "0+1+2" on the command line
        return value

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct_names(methods, METHODS)

    @field_validator("inits")
    @classmethod
    def _known_inits(cls, inits: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct_names(inits, INITS)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError("must list distinct integers")
        return seeds
