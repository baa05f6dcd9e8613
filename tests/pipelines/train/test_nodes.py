"""The training pipeline's checkpoint policy: the ``prune_checkpoints`` node."""

from __future__ import annotations

import pytest

from mle_hand_pipeline.pipelines.train.nodes import log_model, prune_checkpoints
from mle_hand_pipeline.pipelines.train.pipeline import create_pipeline


def _run_folder(tmp_path):
    run = tmp_path / "mle" / "run1"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"b" * 10)
    (run / "last.pt").write_bytes(b"l" * 30)
    return run, {"best_checkpoint": str(run / "best.pt"), "last_checkpoint": str(run / "last.pt")}


@pytest.mark.parametrize(
    ("keep", "kept"), [("all", ["best.pt", "last.pt"]), ("best", ["best.pt"]), ("none", [])]
)
def test_keep_checkpoints_prunes_the_run_folder(tmp_path, keep, kept):
    """Issue 18, row 13: a small grid kept 3.9 GB of checkpoints; a cell keeps best.pt only."""
    run, report = _run_folder(tmp_path)
    prune_checkpoints(report, {"keep_checkpoints": keep}, {}, {"logged": False})
    assert sorted(p.name for p in run.iterdir()) == kept


def test_the_checkpoints_are_pruned_after_the_model_is_evaluated_logged_and_published():
    """Issue 43: the policy is a node of the graph, no longer a hook rewriting the catalog."""
    pipeline = create_pipeline("rhd")
    (prune,) = [n for n in pipeline.nodes if n.name == "rhd.prune_checkpoints"]
    assert prune.outputs == []
    upstream = {n.name for n in pipeline.to_nodes("rhd.prune_checkpoints").nodes}
    assert {"rhd.select_model", "rhd.evaluate_test", "rhd.log_model"} <= upstream
    (publish,) = [n for n in pipeline.nodes if "rhd.model" in n.outputs]
    assert publish.name in upstream


def test_log_model_says_nothing_was_logged_without_a_run(tmp_path):
    assert log_model(tmp_path / "best.pt", {"log_model": True}) == {"logged": False, "registered": None}
