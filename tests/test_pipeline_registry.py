"""The registered pipelines: `kedro run` alone is the quickstart flow, wired through catalog outputs."""

import re
from pathlib import Path

from mle_hand_pipeline.pipeline_registry import register_pipelines


def _producer(pipeline, dataset):
    (node,) = [n for n in pipeline.nodes if dataset in n.outputs]
    return node.name


def test_default_pipeline_is_raw_data_to_crops_to_model_to_metrics():
    pipelines = register_pipelines()
    default = pipelines["__default__"]
    # Only parameters and the checkpoint folder come from outside: everything else is produced inside.
    assert {d for d in default.inputs() if not d.startswith("params:")} == {"rhd.checkpoints"}
    assert _producer(default, "synthetic_rhd_raw") == "generate_synthetic_rhd"
    assert _producer(default, "rhd.crops") == "rhd.make_crops"
    assert _producer(default, "rhd.hands") == "rhd.crop_table"
    assert _producer(default, "freihand.crops") == "freihand.make_crops"
    assert _producer(default, "rhd.test_metrics") == "rhd.evaluate_test"
    (read,) = [n for n in default.nodes if n.name == "rhd.read"]
    assert "synthetic_rhd_raw" in read.inputs
    order = [n.name for n in default.nodes]  # topological
    assert (
        order.index("generate_synthetic_rhd") < order.index("rhd.make_crops") < order.index("rhd.train_model")
    )


def test_step_pipelines_read_the_raw_root_parameter():
    pipelines = register_pipelines()
    assert pipelines["rhd_preprocess"].inputs() == {"params:rhd_root", "params:rhd.preprocess"}
    assert pipelines["freihand_preprocess"].inputs() == {"params:freihand_root", "params:freihand.preprocess"}
    assert "rhd.crops" in pipelines["rhd_preprocess"].all_outputs()


def test_every_registered_pipeline_has_an_end_to_end_kedro_run_test():
    """A new pipeline fails this until a test runs it through `kedro run --pipelines=<name>` (the
    default pipeline: a `kedro_run(project)` without arguments, as the quickstart runs it)."""
    tests = Path(__file__).parent
    text = "\n".join(p.read_text(encoding="utf-8") for p in tests.rglob("test_*.py"))
    named = set(re.findall(r"--pipelines=([A-Za-z0-9_]+)", text))
    if re.search(r"\bkedro_run\(\w+\)", text):
        named.add("__default__")
    assert sorted(set(register_pipelines()) - named) == []
