"""The typed parameter blocks (src/mle_hand_pipeline/parameters.py): defaults, checks, messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mle_hand_pipeline.parameters import CompareParams, EvaluateParams, ParameterError, PredictParams

CONF = Path(__file__).parents[1] / "conf" / "base"


def test_the_configured_blocks_are_valid_and_the_defaults_are_the_configured_values():
    evaluate = yaml.safe_load((CONF / "parameters_evaluate.yml").read_text())["rhd"]["evaluate"]
    assert EvaluateParams.check(evaluate, "rhd.evaluate") == EvaluateParams()
    predict = yaml.safe_load((CONF / "parameters_predict.yml").read_text())["predict"]
    checked = PredictParams.check({**predict, "images": "photos/*.jpg"}, "predict")
    assert checked == PredictParams(images="photos/*.jpg")
    compare = yaml.safe_load((CONF / "parameters_compare.yml").read_text())["rhd"]["compare"]
    assert CompareParams.check(compare, "rhd.compare") == CompareParams()


def test_a_compare_block_takes_lists_from_the_command_line():
    compare = CompareParams.check({"methods": "mle+integral", "seeds": "0+1", "inits": "scratch"}, "c")
    assert (compare.methods, compare.seeds, compare.inits) == (("mle", "integral"), (0, 1), ("scratch",))
    with pytest.raises(ParameterError) as error:
        CompareParams.check({"methods": "mle+dsnt", "seeds": [0, 0], "inits": ["imagenet"]}, "rhd.compare")
    assert error.value.problems == [
        "rhd.compare.methods: unknown ['dsnt']; valid: mle, heatmap_l2, integral, rle, cpm",
        "rhd.compare.seeds must list distinct integers, got [0, 0]",
        "rhd.compare.inits: unknown ['imagenet']; valid: scratch, pretrained",
    ]


def test_the_evaluate_block_knows_the_registry_keys():
    EvaluateParams.check({"register_model": "hand-mle", "register_alias": "champion"}, "rhd.evaluate")
    EvaluateParams.check({"register_model": None, "register_alias": None}, "rhd.evaluate")
    for block, problem in (
        ({"register_model": "m", "register_alias": "latest"}, "rhd.evaluate.register_alias must be"),
        ({"register_alias": "champion"}, "rhd.evaluate.register_alias needs register_model"),
        ({"register_models": "m"}, "rhd.evaluate.register_models is not a parameter"),
    ):
        with pytest.raises(ParameterError, match=problem):
            EvaluateParams.check(block, "rhd.evaluate")


def test_every_problem_of_a_block_is_one_line_named_by_its_full_path():
    with pytest.raises(ParameterError) as error:
        EvaluateParams.check({"checkpoint": "newest", "batch_size": "64", "log_model": "yes"}, "rhd.evaluate")
    assert error.value.problems == [
        "rhd.evaluate.checkpoint must be one of best, last, got 'newest'",
        "rhd.evaluate.batch_size must be a valid integer, got '64' (a string: write numbers with a dot, "
        "e.g. 1.0e-3, or as 0.001)",
        "rhd.evaluate.log_model must be true or false, got 'yes'",
    ]
    with pytest.raises(ParameterError, match=r"^invalid parameters:\n  predict.images is required: a glob"):
        PredictParams.check({}, "predict")


def test_a_box_is_four_numbers_or_the_text_the_command_line_gives():
    assert PredictParams(images="x", box=[1, 2, 3.5, 4]).box == (1.0, 2.0, 3.5, 4.0)
    assert PredictParams(images="x", box="1 2 3 4").box == "1 2 3 4"  # parsed per image (predict.parse_box)
    with pytest.raises(ParameterError, match=r"predict\.box"):
        PredictParams.check({"images": "x", "box": [1, 2, 3]}, "predict")


def test_the_execution_only_keys_are_what_the_grid_leaves_out_of_a_fingerprint():
    assert set(EvaluateParams.execution_only_keys()) == {
        "batch_size",
        "model",
        "log_model",
        "keep_checkpoints",
        "register_model",
        "register_alias",
    }
    assert "precision" not in PredictParams.execution_only_keys()  # bf16 moves the keypoints


def test_a_node_takes_its_block_as_a_dict_or_the_typed_object():
    evaluate = EvaluateParams.of({"checkpoint": "last"})
    assert evaluate.checkpoint == "last" and EvaluateParams.of(evaluate) is evaluate
