"""Both preprocessing pipelines end to end through `kedro run` on a temporary project copy."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import kedro_run, preprocess_rhd

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.datasets.safe_pickle import load_annotation_pickle


@pytest.mark.slow
def test_rhd_preprocess_through_kedro(kedro_project, tiny_rhd):
    root = tiny_rhd["root"]
    preprocess_rhd(kedro_project, root)
    hands = pd.read_parquet(kedro_project / "data/03_primary/rhd_hands.parquet")
    summary = json.loads((kedro_project / "data/08_reporting/rhd_preprocess_summary.json").read_text())

    # The filter count against an independent count straight from the pickles.
    expected_kept = {}
    for part, split_names in (("training", ("train", "val")), ("evaluation", ("test",))):
        annotations = load_annotation_pickle(root / part / f"anno_{part}.pickle")
        count = sum(
            int(a["uv_vis"][rows, 2].sum() >= 10)
            for a in annotations.values()
            for rows in (slice(0, 21), slice(21, 42))
        )
        expected_kept[part] = count
        assert sum(summary["kept"].get(s, 0) for s in split_names) == count
        assert (
            sum(summary["dropped"]["too_few_visible"].get(s, 0) for s in split_names)
            == 2 * len(annotations) - count
        )
    assert len(hands) == sum(expected_kept.values()) == summary["kept_total"]
    assert summary["dropped"]["too_few_visible"], "the synthetic data must give the filter work"
    assert (stack_column(hands["visible"]).sum(axis=1) >= 10).all()
    for path in hands["crop_path"]:
        assert (kedro_project / "data/02_intermediate/rhd_crops" / path).is_file()
    assert (kedro_project / "data/08_reporting/rhd_crops_grid.png").stat().st_size > 10_000


@pytest.mark.slow
def test_freihand_preprocess_through_kedro_on_real_samples(kedro_project, real_freihand):
    kedro_run(kedro_project, "--pipelines=freihand_preprocess", f"--params=freihand_root={real_freihand}")
    hands = pd.read_parquet(kedro_project / "data/03_primary/freihand_hands.parquet")
    assert sorted(hands["image_id"]) == list(range(8))
    assert (hands.groupby("sample_id")["split"].nunique() == 1).all()
    assert (hands["side"] == "right").all() and not hands["mirrored"].any()
    crops_dir = kedro_project / "data/02_intermediate/freihand_crops"
    first = np.asarray(__import__("PIL.Image").Image.open(crops_dir / hands["crop_path"].iloc[0]))
    assert first.shape == (256, 256, 3)
    summary = json.loads((kedro_project / "data/08_reporting/freihand_preprocess_summary.json").read_text())
    assert summary["kept_total"] == 8 and summary["dropped_total"] == 0


def _digest(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_preprocessing_is_reproducible_and_a_failed_run_changes_nothing(kedro_project, tiny_rhd, tmp_path):
    root = Path(shutil.copytree(tiny_rhd["root"], tmp_path / "RHD_published_v2"))
    preprocess_rhd(kedro_project, root)
    table = kedro_project / "data/03_primary/rhd_hands.parquet"
    crops = kedro_project / "data/02_intermediate/rhd_crops"
    first_table = pd.read_parquet(table)
    first_crops = {p.relative_to(crops): p.read_bytes() for p in crops.rglob("*.jpg")}

    # A run over new inputs that fails late (the last image is truncated) leaves every file as it was.
    data = _digest(kedro_project / "data")
    last = sorted((root / "evaluation" / "color").glob("*.png"))[-1]
    intact = last.read_bytes()
    last.write_bytes(intact[:2000])
    output = kedro_run(
        kedro_project,
        "--pipelines=rhd_preprocess",
        f"--params=rhd_root={root},rhd.preprocess.crop.size=48",
        check=False,
    )
    assert f"{last.name}: cannot read image" in output
    assert _digest(kedro_project / "data") == data
    last.write_bytes(intact)

    for path in crops.rglob("*.jpg"):
        path.unlink()
    preprocess_rhd(kedro_project, root)
    pd.testing.assert_frame_equal(pd.read_parquet(table), first_table)
    assert {p.relative_to(crops): p.read_bytes() for p in crops.rglob("*.jpg")} == first_crops
