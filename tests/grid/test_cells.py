"""The grid's cells: what each changes, their keys and fingerprints, and their command lines."""

import pytest
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS
from omegaconf import OmegaConf

from mle_hand_pipeline.grid import cells as C
from mle_hand_pipeline.methods import METHODS
from mle_hand_pipeline.parameters import CompareParams

MODEL = {**TINY_MODEL_PARAMS, "method": "mle", "init_checkpoint": None}
TRAIN = {**TINY_TRAIN_PARAMS, "seed": 0}
EVALUATE = {"checkpoint": "best", "batch_size": 16, "model": None, "log_model": True}
COMPARE = {
    "methods": ["mle", "rle"],
    "seeds": [0, 1],
    "inits": ["scratch", "pretrained"],
    "loss_overrides": {"rle": {"residual": "laplace"}},
    "noise_levels": [{"name": "clean"}, {"outlier_fraction": 0.3}],
}
BACKBONE = "data/06_models/rhd/pretrained_backbone.pt"


def plan(compare=COMPARE, **blocks):
    merged = {"model": MODEL, "train": TRAIN, "evaluate": EVALUATE, **blocks}
    return C.plan_cells(merged["model"], merged["train"], merged["evaluate"], compare, BACKBONE)


def test_the_plan_is_every_combination_ordered_init_noise_seed_method():
    cells = plan()
    assert len(cells) == 2 * 2 * 2 * 2
    assert [c.key for c in cells[:5]] == [
        "mle-clean-scratch-s0",
        "rle-clean-scratch-s0",
        "mle-clean-scratch-s1",
        "rle-clean-scratch-s1",
        "mle-j0f0o0.3-scratch-s0",
    ]
    assert len({c.key for c in cells}) == len(cells) and len({c.config for c in cells}) == len(cells)
    assert cells[-1].key == "rle-j0f0o0.3-pretrained-s1"


def test_a_cell_overrides_only_its_method_loss_init_seed_and_noise():
    by_key = {c.key: c for c in plan()}
    assert by_key["mle-clean-scratch-s1"].overrides == {
        "model.method": "mle",
        "model.init_checkpoint": None,
        "train.seed": 1,
        "train.label_noise.fraction": 0.0,
        "train.label_noise.jitter_px": 0.0,
        "train.label_noise.outlier_fraction": 0.0,
        "train.label_noise.seed": 1,  # each seed redraws the corrupted labels
    }
    rle = by_key["rle-j0f0o0.3-pretrained-s0"].overrides
    assert rle["model.loss.residual"] == "laplace" and rle["model.init_checkpoint"] == BACKBONE
    assert rle["train.label_noise.outlier_fraction"] == 0.3
    fixed = plan({**COMPARE, "noise_levels": [{"name": "o", "outlier_fraction": 0.1, "seed": 5}]})
    assert {c.overrides["train.label_noise.seed"] for c in fixed} == {5}


def test_the_fingerprint_follows_what_the_run_computes_not_how_it_executes():
    key = "mle-clean-scratch-s0"
    first = {c.key: c.config for c in plan()}[key]
    faster = plan(
        train={**TRAIN, "num_workers": 8, "devices": "cuda"}, evaluate={**EVALUATE, "batch_size": 256}
    )
    assert {c.key: c.config for c in faster}[key] == first
    longer = plan(train={**TRAIN, "epochs": 2})
    assert {c.key: c.config for c in longer}[key] != first
    # Issue 18's new keys change no result: grids planned before them keep their fingerprints.
    checked = plan(
        model={**MODEL, "init_partial": False},
        train={**TRAIN, "verify_crops": "full"},
        evaluate={**EVALUATE, "keep_checkpoints": "all"},
    )
    assert {c.key: c.config for c in checked}[key] == first


def test_bad_grids_fail_before_training_naming_the_parameter():
    with pytest.raises(ValueError, match=r"compare.methods: unknown \['hourglass'\]"):
        plan({"methods": ["mle", "hourglass"]})
    with pytest.raises(ValueError, match=r"compare\.inits"):
        plan({"inits": ["imagenet"]})
    with pytest.raises(ValueError, match="named 'clean'"):
        plan({"noise_levels": [{}, {"fraction": 0.5}]})  # both clean
    with pytest.raises(ValueError, match="fraction"):
        plan({"noise_levels": [{"fraction": 2.0, "jitter_px": 1.0}]})
    with pytest.raises(ValueError, match=r"compare\.seeds"):
        plan({"seeds": [0, 0]})
    with pytest.raises(ValueError, match="pretrained_backbone"):
        C.plan_cells(MODEL, TRAIN, EVALUATE, {"inits": ["pretrained"]}, None)
    with pytest.raises(ValueError, match="name 'a b'"):
        plan({"noise_levels": [{"name": "a b"}]})
    # defaults (CompareParams, as conf/base): every method, four noise levels, scratch, seeds 0, 1, 2
    default = [c.key for c in plan({})]
    assert len(default) == 5 * 4 * 3 and default[:5] == [f"{m}-clean-scratch-s0" for m in METHODS]
    # from the command line: "mle+integral", "0+1"
    from_command_line = {"methods": "mle+integral", "seeds": "0+1", "noise_levels": [{"name": "clean"}]}
    assert [c.key for c in plan(from_command_line)] == [
        "mle-clean-scratch-s0",
        "integral-clean-scratch-s0",
        "mle-clean-scratch-s1",
        "integral-clean-scratch-s1",
    ]


def test_the_command_is_a_train_run_whose_params_kedro_reads_back_unchanged():
    cell = {c.key: c for c in plan()}["rle-j0f0o0.3-pretrained-s1"]
    runtime = {"rhd": {"train": {"epochs": 4}, "compare": {"methods": "mle+rle"}}, "other": 1}
    params = C.cell_params(cell, "rhd", "study1", runtime, CompareParams(log_model=False))
    argv = C.kedro_command(params, "rhd", env="paper")
    assert argv[:4] == ["kedro", "run", "--pipelines=train_rhd", "--env=paper"]
    # what `kedro run --params` makes of it (kedro.framework.cli.utils._split_params)
    dotlist = argv[4].removeprefix("--params=").split(",")
    parsed = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    assert parsed["other"] == 1 and "compare" not in parsed["rhd"]  # the parent's --params, but not compare
    rhd = parsed["rhd"]
    assert rhd["train"]["epochs"] == 4 and rhd["train"]["seed"] == 1
    assert rhd["train"]["label_noise"] == {
        "fraction": 0.0,
        "jitter_px": 0.0,
        "outlier_fraction": 0.3,
        "seed": 1,
    }
    assert rhd["model"] == {"method": "rle", "loss": {"residual": "laplace"}, "init_checkpoint": BACKBONE}
    assert rhd["evaluate"] == {
        "log_model": False,
        "keep_checkpoints": "best",
        "register_model": None,  # a cell never registers
    }
    assert rhd["tracking"]["run_name"] == "rhd-rle-j0f0o0.3-pretrained-s1"
    assert rhd["tracking"]["tags"] == {**cell.tags("study1"), "seed": 1}  # tag_run sets str(value)
    assert cell.tags("study1")["seed"] == "1" and cell.tags("study1")["cell_config"] == cell.config
    scratch = C.cell_params({c.key: c for c in plan()}["mle-clean-scratch-s0"], "rhd", "study1")
    assert "init_checkpoint=null" in C.kedro_command(scratch, "rhd")[-1]
    # strings that would read back as numbers or booleans are quoted; others stay readable
    tricky = {"rhd.a": "1e5", "rhd.b": "true", "rhd.c": "it's", "rhd.d": "data/x.pt", "rhd.e": 1e-5}
    argv = C.kedro_command(tricky, "rhd")
    assert "rhd.d=data/x.pt" in argv[-1]
    assert OmegaConf.to_container(OmegaConf.from_dotlist(argv[-1].removeprefix("--params=").split(","))) == {
        "rhd": {"a": "1e5", "b": "true", "c": "it's", "d": "data/x.pt", "e": 1e-5}
    }
    with pytest.raises(ValueError, match="splits on commas"):
        C.kedro_command({"rhd.train.lr_milestones": [10, 20]}, "rhd")
    with pytest.raises(ValueError, match=r"compare\.name"):
        C.validate_comparison_name("my comparison")


def test_a_method_without_a_resnet_has_no_pretrained_cells():
    cells = plan({**COMPARE, "methods": ["mle", "cpm"], "noise_levels": [{}]})
    assert [c.key for c in cells if c.init == "pretrained"] == [
        "mle-clean-pretrained-s0",
        "mle-clean-pretrained-s1",
    ]
    assert [c.key for c in cells if c.method == "cpm"] == ["cpm-clean-scratch-s0", "cpm-clean-scratch-s1"]
    with pytest.raises(ValueError, match=r"no cells: methods \['cpm'\] have no ResNet"):
        plan({"methods": ["cpm"], "inits": ["pretrained"]})
