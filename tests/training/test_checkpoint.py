"""Models from checkpoint files: warm start from another method's weights, loading old checkpoints."""

import pytest
import torch

from mle_hand_pipeline.training.checkpoint import (
    ModelSpec,
    check_warm_start,
    load_model,
    save_atomic,
    warm_start,
)
from mle_hand_pipeline.training.validation import ParameterError, validate_model_params

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)


def test_warm_start_loads_shared_weights_and_keeps_new_heads(tmp_path):
    source = ModelSpec(**{**SPEC.__dict__, "method": "integral"}).build_model()
    save_atomic({"model": source.state_dict()}, tmp_path / "best.pt")
    torch.manual_seed(123)
    target = SPEC.build_model()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    counts = warm_start(target, tmp_path / "best.pt", log=False, allow_partial=True)
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    variance = [k for k in loaded if k not in source.state_dict()]
    assert variance and all("variance" in k or k == "sigma_scale" for k in variance)
    assert all(torch.equal(loaded[k], fresh[k]) for k in variance)
    assert counts == {"init_loaded_tensors": len(source.state_dict()), "init_fresh_tensors": len(variance)}


def test_load_model_accepts_checkpoints_from_before_sigma_calibration_only(tmp_path, caplog):
    weights = SPEC.build_model().state_dict()
    del weights["sigma_scale"]
    save_atomic({"model": weights, "spec": SPEC.checkpoint_dict()}, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt")
    assert torch.equal(model.sigma_scale, torch.ones(2, 2)) and "predates sigma calibration" in caplog.text
    del weights["stages.0.variance_head.fc.0.weight"]
    save_atomic({"model": weights, "spec": SPEC.checkpoint_dict()}, tmp_path / "broken.pt")
    with pytest.raises(RuntimeError, match=r"broken\.pt does not fit.*variance_head"):
        load_model(tmp_path / "broken.pt")


def _run_checkpoint(spec, path):
    save_atomic({"model": spec.build_model().state_dict(), "spec": spec.checkpoint_dict()}, path)
    return path


def test_a_run_checkpoint_of_another_backbone_is_refused(tmp_path):
    """Issue 18, row 5: a resnet18 best.pt into a resnet34 model loaded 195 of 291 tensors at INFO, exit 0."""
    path = _run_checkpoint(SPEC, tmp_path / "best.pt")
    resnet34 = ModelSpec(**{**SPEC.__dict__, "backbone": "resnet34", "init_checkpoint": str(path)})
    refused = r"best\.pt: a resnet18 run checkpoint cannot initialise a resnet34 model; set model\.backbone="
    with pytest.raises(ValueError, match=refused):
        warm_start(resnet34.build_model(), path, allow_partial=True)
    with pytest.raises(
        ParameterError, match=r"rhd\.model\.init_checkpoint: .*best\.pt: a resnet18 run checkpoint"
    ):
        validate_model_params({**resnet34.__dict__, "loss": {}}, prefix="rhd.model")


def test_a_partial_warm_start_needs_init_partial_and_is_a_warning_with_counts(tmp_path, caplog):
    path = _run_checkpoint(ModelSpec(**{**SPEC.__dict__, "method": "integral"}), tmp_path / "best.pt")
    spec = ModelSpec(**{**SPEC.__dict__, "init_checkpoint": str(path)})
    partial = r"a partial warm start: \d+ of \d+ tensors loaded, \d+ start fresh \(e\.g\. .*variance"
    with pytest.raises(ValueError, match=partial + r".*set model\.init_partial=true"):
        check_warm_start(spec)
    block = {k: v for k, v in spec.__dict__.items() if k != "pretrained"}
    with pytest.raises(ParameterError, match=r"rhd\.model\.init_checkpoint: .*init_partial=true"):
        validate_model_params(block, prefix="rhd.model")
    validate_model_params({**block, "init_partial": True}, prefix="rhd.model")
    with caplog.at_level("WARNING"):
        counts = warm_start(spec.build_model(), path, allow_partial=True)
    assert counts["init_fresh_tensors"] > 0 and counts["init_loaded_tensors"] > 0
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"{counts['init_loaded_tensors']} of {sum(counts.values())} tensors loaded" in caplog.text
    # The same method's checkpoint loads whole: no flag needed.
    same = _run_checkpoint(SPEC, tmp_path / "mle.pt")
    assert check_warm_start(ModelSpec(**{**SPEC.__dict__, "init_checkpoint": str(same)})) == {
        "init_loaded_tensors": len(SPEC.build_model().state_dict()),
        "init_fresh_tensors": 0,
    }
    assert "init_partial" not in spec.checkpoint_dict()


@pytest.mark.slow
def test_a_training_run_logs_what_its_warm_start_loaded(tiny_rhd, tmp_path, monkeypatch):
    from mle_hand_pipeline.training import runs

    source = _run_checkpoint(ModelSpec(**{**SPEC.__dict__, "method": "integral"}), tmp_path / "best.pt")
    logged = {}

    class Stop(Exception):
        pass

    def fit(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(runs, "fit", fit)
    model = {**{k: v for k, v in SPEC.__dict__.items() if k != "pretrained"}, "init_checkpoint": str(source)}
    train = {"epochs": 1, "batch_size": 8, "num_workers": 0}
    with pytest.raises(Stop):
        runs.train_method(
            tiny_rhd["hands"], tiny_rhd["crops"], tmp_path / "ck", {**model, "init_partial": True}, train,
            log_metrics=logged.update,
        )  # fmt: skip
    assert logged["init_fresh_tensors"] > 0 and logged["init_loaded_tensors"] > 0


def test_a_full_disk_while_saving_names_the_file_and_says_so(tmp_path, monkeypatch):
    """Issue 18, row 8: the run ended with torch's `[enforce fail at inline_container.cc:672] .
    unexpected pos ...`, no file, no "disk full". /dev/full fails every write as a full disk does."""
    import collections
    import os
    import shutil

    from mle_hand_pipeline.training import checkpoint

    def full_disk_file(dir, prefix, suffix):
        return os.open("/dev/full", os.O_WRONLY), str(dir / f"{prefix}x{suffix}")

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", full_disk_file)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**10 - 4096, 4096))
    path = tmp_path / "run" / "last.pt"
    with pytest.raises(checkpoint.CheckpointWriteError) as raised:
        save_atomic({"weights": torch.zeros(1_000_000)}, path)
    message = str(raised.value)
    assert message.startswith(f"cannot write checkpoint {path}: the disk is full (0 MB free); free space")
    # torch's "unexpected pos", or the ENOSPC of closing the file after it: either way the disk is named
    assert message.endswith(("unexpected pos", "No space left on device)")) or "unexpected pos" in message
    assert not path.exists() and list(path.parent.iterdir()) == []
    # Another write error names the file too, without claiming a full disk.
    monkeypatch.undo()

    def failing_save(state, file):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"last\.pt: RuntimeError: \[enforce fail"):
        save_atomic({"weights": torch.zeros(10)}, path)
    assert list(path.parent.iterdir()) == []
