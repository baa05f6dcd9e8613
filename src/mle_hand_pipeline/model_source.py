"""Where a trained model comes from: the one resolver behind ``predict`` and the ``evaluate`` pipelines,
and the predictions of any model on a table of stored crops (:func:`predict_crop_table`).

A model is named by (tried in this order):

- a local file: an ONNX graph (``*.onnx``) or a training checkpoint (``best.pt`` / ``last.pt``);
- a local folder holding an ``MLmodel`` file: an MLflow model (e.g. one downloaded, or a logged
  model's ``artifacts/`` folder under the run store);
- a Kedro versioned checkpoint folder (``<name>.pt/<version>/<name>.pt``, e.g. the catalog's
  ``data/06_models/rhd/model.pt`` that every ``train_rhd`` run publishes): its newest version;
- an MLflow run id (32 hex digits) or ``runs:/<run_id>``: the run's PyTorch model ``model``;
- an MLflow model URI: ``runs:/<run_id>/<name>``, a registered model version
  ``models:/<name>/<version>`` or ``models:/<name>@<alias>``, or any ``scheme:/...`` whose scheme has
  two or more letters (so ``C:/x/best.pt`` is a Windows path, not a
  URI).

The tracking store for run ids and URIs is MLflow's usual one (``MLFLOW_TRACKING_URI``, else the
project's ``mlflow.db``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the training code load when a model is, not with `mle-hand --help`
    import numpy as np
    import pandas as pd
    from torch import nn

logger = logging.getLogger(__name__)

CHECKPOINT, ONNX, MLFLOW = "checkpoint", "onnx", "mlflow"

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # runs:/..., models:/..., file:/..., s3://...
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RUN_URI = re.compile(r"^runs:/([^/]+)/?(.*)$")
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


class ModelNotFoundError(FileNotFoundError):
    """The model cannot be found or loaded; the message names it and says what was tried."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference.

    kind: ``"checkpoint"``, ``"onnx"`` or ``"mlflow"``.
    location: the local path (checkpoint, ONNX file, MLflow model folder) or the MLflow model URI
        (a bare run is completed to its ``model``).
    name: the reference as given (for messages and output files).
    run_id: the MLflow run of a ``runs:/`` URI, run id or registry alias, else None.

    A registry alias (``models:/<name>@<alias>``) is resolved when the source is: ``location`` is the
    version it named then (``models:/<name>/<version>``); :attr:`label` says both.
    """

    kind: str
    location: str
    name: str
    run_id: str | None = None

    @property
    def label(self) -> str:
        """The reference as given, and what it resolved to where that differs (an alias' version)."""
        return (
            self.name
            if self.location in (self.name, f"{self.name.rstrip('/')}/model")
            else (f"{self.name} ({self.location})")
        )


def needs_tracking_store(model: str | Path) -> bool:
    """Whether ``model`` is read from an MLflow tracking store (a run id or URI, not a local path)."""
    text = str(model)
    return not Path(text).expanduser().exists() and bool(_RUN_ID.match(text) or is_mlflow_uri(text))


def is_mlflow_uri(text: str) -> bool:
    """``runs:/<id>/model``, ``models:/<name>/<version>`` or any ``scheme:/`` URI, as opposed to a path."""
    return bool(_URI.match(str(text)))


def resolve_model_source(model: str | Path) -> ModelSource:
    """Resolve ``model`` (see the module docstring); :class:`ModelNotFoundError` names what was tried."""
    text = str(model)
    path = Path(text).expanduser()
    if path.is_file():
        return ModelSource(ONNX if path.suffix == ".onnx" else CHECKPOINT, str(path), text)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            # A plain path, not a file:// URI: MLflow's Model.load only finds local MLmodel files by path.
            return ModelSource(MLFLOW, str(path.resolve()), text)
        versions = sorted(v for v in path.glob(f"*/{path.name}") if v.is_file())
        if versions:  # Kedro's version names are UTC timestamps: they sort in time order
            return ModelSource(CHECKPOINT, str(versions[-1]), text)
        raise ModelNotFoundError(
            f"model {text}: a folder, but neither an MLflow model (no MLmodel file) nor a versioned "
            f"checkpoint (no <version>/{path.name} inside)"
        )
    if re.match(r"^https?://", text, re.IGNORECASE):
        raise ModelNotFoundError(
            f"model {text}: a web address is not a model source; for a model on an MLflow tracking "
            "server, set MLFLOW_TRACKING_URI (or --tracking-uri) to the server and name the model as "
            "runs:/<run_id>/model or models:/<name>@<alias>; for a file, download it and give its path"
        )
    if _RUN_ID.match(text):
        text_uri = f"runs:/{text}"
    elif is_mlflow_uri(text):
        text_uri = text
    else:
        raise ModelNotFoundError(
            f"model {text!r} not found: no such file, and not an MLflow run id or model URI "
            "(runs:/<run_id>, runs:/<run_id>/model, models:/<name>/<version>, models:/<name>@<alias>)"
        )
    registered = _REGISTERED.match(text_uri)
    if registered and registered["alias"]:
        return _pinned_alias(text, registered["name"], registered["alias"])
    run = _RUN_URI.match(text_uri)
    if run and not run.group(2).strip("/"):
        text_uri = f"runs:/{run.group(1)}/model"  # a bare run: its PyTorch model
    return ModelSource(MLFLOW, text_uri, text, run.group(1) if run else None)


def _pinned_alias(text: str, name: str, alias: str) -> ModelSource:
    """``models:/<name>@<alias>`` resolved once to the version it points at now: what is loaded, logged
    and written in outputs is that version, even if the alias moves while the model is in use."""
    import mlflow

    with mlflow_load_errors(text):
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    return ModelSource(MLFLOW, f"models:/{name}/{version.version}", text, version.run_id)


@dataclass(frozen=True)
class MlflowModelInfo:
    """What this project reads from an MLflow model's ``MLmodel`` file."""

    flavors: tuple[str, ...]
    input_size: int | None  # S of the (-1, 3, S, S) input signature; None without a tensor signature


def mlflow_model_info(location: str) -> MlflowModelInfo:
    """Flavours and input crop side of the MLflow model at ``location`` (path or URI).

    Reads the ``MLmodel`` file itself (``mlflow.models.Model.load``), not ``get_model_info``: that
    also looks the logged model up in the tracking store, which fails for a model folder copied or
    downloaded from another store.
    """
    from mlflow.models import Model

    model = Model.load(location)
    size = None
    if model.signature is not None and model.signature.inputs is not None:
        specs = model.signature.inputs.inputs
        shape = getattr(specs[0], "shape", None) if specs else None
        size = int(shape[-1]) if shape else None
    return MlflowModelInfo(tuple(model.flavors), size)


@contextmanager
def mlflow_load_errors(name: str) -> Iterator[None]:
    """Turn MLflow's and the file system's errors while loading model ``name`` into
    :class:`ModelNotFoundError` naming the model and the tracking store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        yield
    except ModelNotFoundError:
        raise
    except (MlflowException, OSError) as error:
        hint = "set MLFLOW_TRACKING_URI or --tracking-uri if the run is elsewhere"
        if re.search(r"\b401\b|unauthori[sz]ed|credentials", str(error), re.IGNORECASE):
            hint = "the server asks for credentials: set MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD"
        raise ModelNotFoundError(
            f"model {name}: cannot load it from MLflow (tracking URI {mlflow.get_tracking_uri()}; {hint}): "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        ) from error


def load_mlflow_pytorch(source: ModelSource, device: str = "cpu"):
    """The PyTorch model of an MLflow source (``(B, 3, S, S)`` normalised crops -> ``(B, K, 4)`` = x, y,
    sigma_x, sigma_y in input-crop pixels, as :func:`...export.log_mlflow_model` logs it) and its S.

    Raises :class:`ModelNotFoundError` naming the model when it cannot be loaded or has no PyTorch
    flavour.
    """
    from mle_hand_pipeline.export import load_logged_model

    with mlflow_load_errors(source.name):
        info = mlflow_model_info(source.location)
        if "pytorch" not in info.flavors:
            raise ModelNotFoundError(
                f"model {source.name}: {source.location} has no PyTorch flavour (flavours: "
                f"{', '.join(info.flavors)}); use --backend onnx, or the run's 'model'"
            )
        if info.input_size is None:
            raise ModelNotFoundError(f"model {source.name}: its MLmodel has no (B, 3, S, S) input signature")
        return load_logged_model(source.location, device), info.input_size


def registered_run_id(uri: str) -> str | None:
    """The run that logged the registered model version ``models:/<name>/<version>`` or
    ``models:/<name>@<alias>`` (None for any other URI)."""
    import mlflow

    match = _REGISTERED.match(uri)
    if not match:
        return None
    client = mlflow.MlflowClient()
    if match["alias"]:
        version = client.get_model_version_by_alias(match["name"], match["alias"])
    else:
        version = client.get_model_version(match["name"], match["version"])
    return version.run_id


def training_method(source: ModelSource) -> str:
    """The ``*.model.method`` parameter of the MLflow run that logged ``source`` (a run's model or a
    registered model version), else ``"mlflow model"``."""
    import mlflow

    run_id = source.run_id or (registered_run_id(source.location) if source.kind == MLFLOW else None)
    if run_id:
        params = mlflow.MlflowClient().get_run(run_id).data.params
        for key, value in params.items():
            if key.endswith("model.method"):
                return value
    return "mlflow model"


@dataclass(frozen=True)
class CropPredictions:
    """A model's predictions on a table of stored crops (:func:`predict_crop_table`).

    coords: (N, T, K, 2) in stored-crop pixels, every stage of a checkpoint (T = 1: an MLflow model's
        final stage). sigmas: the same shape (predicted RMS errors), or None without uncertainty.
    method: the training method (an MLflow model: its run's ``model.method``, else ``"mlflow model"``).
    all_stages: whether every stage is there (a checkpoint) or only the final one.
    source: the resolved model.
    """

    coords: np.ndarray
    sigmas: np.ndarray | None
    method: str
    all_stages: bool
    source: ModelSource


def predict_crop_table(
    model: str | Path, table: pd.DataFrame, crops_dir: Path, batch_size: int
) -> CropPredictions:
    """Resolve ``model`` (see the module docstring) and predict ``table``'s crops with it, on CUDA when
    present: a checkpoint gives every stage, an MLflow model the final one.

    Raises:
        ModelNotFoundError: naming the model when it cannot be found or loaded.
        ValueError: for an ONNX file (no stage outputs, no method: evaluate a checkpoint instead).
    """
    from mle_hand_pipeline.training.inference import inference_device
    from mle_hand_pipeline.training.runs import predict_checkpoint

    source = resolve_model_source(model)
    if source.kind == CHECKPOINT:
        coords, sigmas, spec = predict_checkpoint(source.location, table, crops_dir, batch_size)
        return CropPredictions(coords, sigmas, spec.method, True, source)
    if source.kind == MLFLOW:
        device = inference_device()
        network, input_size = load_mlflow_pytorch(source, device)
        coords, sigmas = _predict_packed(network, input_size, table, crops_dir, batch_size, device)
        logger.info("MLflow model %s: final stage only (per-stage metrics need a checkpoint)", source.name)
        return CropPredictions(coords, sigmas, training_method(source), False, source)
    raise ValueError(f"{source.name} is an ONNX file: evaluate a checkpoint or an MLflow model")


def _predict_packed(
    model: nn.Module, input_size: int, table: pd.DataFrame, crops_dir: Path, batch_size: int, device: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Final-stage predictions of a packed model (an MLflow PyTorch model: ``(B, K, 4)`` = x, y,
    sigma_x, sigma_y in input-crop pixels, on ``device``) mapped to stored-crop pixels: coords
    ``(N, 1, K, 2)``, sigmas ``(N, 1, K, 2)`` or None when the model's sigmas are all zero (methods
    without uncertainty)."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from mle_hand_pipeline.training.augment import prepare_batch
    from mle_hand_pipeline.training.data import HandCrops

    dataset = HandCrops(table, crops_dir)
    outputs = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images, _, _ = prepare_batch(batch, input_size, torch.device(device), None, None)
            n = len(images)
            if n == 1:  # torch.export specialises batch sizes 0 and 1: the dynamic batch axis starts at 2
                images = images.repeat(2, 1, 1, 1)
            outputs.append(model(images)[:n].float().cpu())
    packed = torch.cat(outputs).numpy().astype(np.float64) * (dataset.crop_size / input_size)
    coords, sigmas = packed[:, None, :, :2], packed[:, None, :, 2:]
    return coords, (None if not sigmas.any() else sigmas)
