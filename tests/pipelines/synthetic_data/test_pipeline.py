"""The ``synthetic_data`` Kedro pipeline, run end to end on tiny sizes with an in-memory catalog."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from mle_hand_pipeline.pipelines.synthetic_data import create_pipeline
from mle_hand_pipeline.settings import CONFIG_LOADER_ARGS
from mle_hand_pipeline.synthetic import FreiHANDConfig, RHDConfig

CONF = Path(__file__).parents[3] / "conf"
OUTPUTS = (
    "synthetic_freihand_summary",
    "synthetic_rhd_summary",
    "synthetic_data_summary",
    "synthetic_freihand_raw",
    "synthetic_rhd_raw",
)


def _catalog(tmp_path: Path, workers: int = 1) -> DataCatalog:
    catalog = DataCatalog()
    catalog["params:synthetic_data.seed"] = 3
    catalog["params:synthetic_data.workers"] = workers
    catalog["params:synthetic_data.freihand"] = {"root": str(tmp_path / "FreiHAND_pub_v2"), "n_unique": 2}
    catalog["params:synthetic_data.rhd"] = {
        "root": str(tmp_path / "RHD_published_v2"),
        "n_training": 3,
        "n_evaluation": 2,
    }
    for name in OUTPUTS:
        catalog[name] = MemoryDataset()
    return catalog


def test_pipeline_shape():
    pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "generate_synthetic_freihand",
        "generate_synthetic_rhd",
        "combine_synthetic_summaries",
    }
    assert pipeline.inputs() == {
        "params:synthetic_data.freihand",
        "params:synthetic_data.rhd",
        "params:synthetic_data.seed",
        "params:synthetic_data.workers",
    }
    assert pipeline.outputs() == {"synthetic_data_summary", "synthetic_freihand_raw", "synthetic_rhd_raw"}


def test_pipeline_runs_and_writes_both_layouts(tmp_path):
    catalog = _catalog(tmp_path)
    SequentialRunner().run(create_pipeline(), catalog)
    # (The per-dataset summaries are intermediate MemoryDatasets, released once combined.)
    summary = catalog.load("synthetic_data_summary")
    assert set(summary) == {"freihand", "rhd"}
    json.dumps(summary)  # the summaries must be JSON-serialisable for json.JSONDataset
    # The raw folders are outputs (the catalog's FolderDataset checks they are the folders it names).
    assert catalog.load("synthetic_freihand_raw") == str(tmp_path / "FreiHAND_pub_v2")
    assert catalog.load("synthetic_rhd_raw") == str(tmp_path / "RHD_published_v2")

    fh = tmp_path / "FreiHAND_pub_v2"
    assert summary["freihand"]["n_images"] == 8
    assert len(list((fh / "training" / "rgb").glob("*.jpg"))) == 8
    assert len(list((fh / "training" / "mask").glob("*.jpg"))) == 2
    assert len(json.loads((fh / "training_xyz.json").read_text())) == 2

    rhd = tmp_path / "RHD_published_v2"
    for split, n in (("training", 3), ("evaluation", 2)):
        assert summary["rhd"][split]["n_images"] == n
        assert len(list((rhd / split / "color").glob("*.png"))) == n
        anno = pickle.loads((rhd / split / f"anno_{split}.pickle").read_bytes())
        assert sorted(anno) == list(range(n))


def test_parameters_file_is_accepted_by_the_generators():
    # Loaded as Kedro loads it: the roots are ${globals:...} interpolations (conf/base/globals.yml).
    params = OmegaConfigLoader(str(CONF), **CONFIG_LOADER_ARGS)["parameters"]["synthetic_data"]
    assert {"seed", "workers", "freihand", "rhd"} <= set(params)
    freihand = FreiHANDConfig.from_params(params["freihand"])
    rhd = RHDConfig.from_params(params["rhd"])
    # The documented defaults: small, and in the layouts' native sizes.
    assert (freihand.n_unique, freihand.image_size) == (150, 224)
    assert (rhd.n_training, rhd.n_evaluation, rhd.image_size) == (3200, 1000, 320)
    assert freihand.root.endswith("synthetic/FreiHAND_pub_v2")
    assert rhd.root.endswith("synthetic/RHD_published_v2")
    assert params["workers"] == 2
    # The YAML and the dataclass defaults agree, so library users get the same data as `kedro run`.
    assert freihand == FreiHANDConfig()
    assert rhd == RHDConfig()
