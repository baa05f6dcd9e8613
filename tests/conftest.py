"""Shared fixtures. Real samples are copied into tests/fixtures so the suite runs anywhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import make_project, preprocess_rhd

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Tests choose their tracking store (a temporary mlflow.db, or a test server): not the user's server.
os.environ.pop("MLFLOW_TRACKING_URI", None)
# Before torch loads: idle OpenMP threads must not spin while test subprocesses share the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri():
    """Every test starts and ends without MLFLOW_TRACKING_URI: ``mlflow.set_tracking_uri``
    (kedro-mlflow's hook and in-process tests call it) also sets it in ``os.environ`` (MLflow 3), and a
    later test's ``kedro run`` child (or the next module's fixtures) would log to that store instead of
    its project's mlflow.db. Removed, not restored: monkeypatch would put a leaked value back."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


FIXTURES = Path(__file__).parent / "fixtures"
REAL_SAMPLES = FIXTURES / "real_samples"


@pytest.fixture
def real_rhd(tmp_path: Path) -> Path:
    """A writable copy of the 3 real RHD evaluation samples (RHD_published_v2 layout)."""
    return Path(shutil.copytree(REAL_SAMPLES / "RHD_published_v2", tmp_path / "RHD_published_v2"))


@pytest.fixture
def real_freihand(tmp_path: Path) -> Path:
    """A writable copy of the 8 real FreiHAND images (2 samples x 4 versions)."""
    return Path(shutil.copytree(REAL_SAMPLES / "FreiHAND_pub_v2", tmp_path / "FreiHAND_pub_v2"))


@pytest.fixture(scope="session")
def tiny_rhd(tmp_path_factory) -> dict:
    """A small synthetic RHD set, preprocessed into 64 px crops: {"root", "crops", "hands"}.

    Rendered once per test session (a few seconds) and shared read-only by the training tests.
    """
    from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
    from mle_hand_pipeline.datasets.records import filter_visible
    from mle_hand_pipeline.datasets.rhd import read_rhd
    from mle_hand_pipeline.synthetic.writers import RHDConfig, generate_rhd

    base = tmp_path_factory.mktemp("tiny_rhd")
    root = base / "RHD_published_v2"
    generate_rhd(RHDConfig(root=str(root), n_training=36, n_evaluation=10), seed=7, workers=1, progress=False)
    hands, _ = read_rhd(root, ["training", "evaluation"], val_ratio=0.25, seed=0, on_bad_sample="raise")
    kept, _ = filter_visible(hands, 10)
    table, _ = crop_hands(kept, root, base / "crops", CropSettings(size=64), workers=1, on_bad_sample="raise")
    return {"root": root, "crops": base / "crops", "hands": table}


PROJECT_ROOT = Path(__file__).parents[1]


@pytest.fixture
def kedro_project(tmp_path: Path) -> Path:
    """A temporary copy of the project's configuration: `kedro run` there writes data, mlflow.db and
    mlruns/ under tmp_path, never into the repository."""
    return make_project(tmp_path)


@pytest.fixture(scope="session")
def preprocessed_rhd_data(tmp_path_factory, tiny_rhd) -> Path:
    """The ``data/`` folder of a project where `kedro run --pipelines=rhd_preprocess` ran on the tiny
    RHD set (64 px crops), made once per test process. Tests that are not about preprocessing copy it
    into their project (``shutil.copytree(preprocessed_rhd_data, project / "data")``); its MLflow run
    stays behind in that project's own store."""
    project = make_project(tmp_path_factory.mktemp("preprocessed_rhd"))
    preprocess_rhd(project, tiny_rhd["root"])
    return project / "data"
