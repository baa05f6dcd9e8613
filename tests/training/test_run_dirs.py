"""Per-run checkpoint folders: concurrent runs never share files, resume picks the right run."""

import os

import pytest

from mle_hand_pipeline.training import run_dirs
from mle_hand_pipeline.training.run_dirs import RunInProgressError, claim_run_dir, read_run_file


def _interrupted(method_dir, run_id, content=b"state", mtime=None):
    """A run folder as a killed run leaves it: a last.pt, status 'training', no lock held."""
    with (
        pytest.raises(KeyboardInterrupt),
        claim_run_dir(method_dir, run_id, tracking_id=f"mlflow-{run_id}") as run,
    ):
        (run.path / "last.pt").write_bytes(content)
        (run.path / "best.pt").write_bytes(content + b"-best")
        if mtime is not None:
            os.utime(run.path / "last.pt", (mtime, mtime))
        raise KeyboardInterrupt
    return method_dir / run_id


def test_each_run_owns_a_folder_and_is_marked_trained(tmp_path):
    with claim_run_dir(tmp_path, "a") as a, claim_run_dir(tmp_path, "b") as b:
        assert a.path == tmp_path / "a" and b.path == tmp_path / "b"
        assert read_run_file(a.path)["status"] == "training"
    assert read_run_file(a.path)["status"] == read_run_file(b.path)["status"] == "trained"
    with pytest.raises(FileExistsError), claim_run_dir(tmp_path, "a"):
        pass  # a run id is never reused
    assert run_dirs.local_run_id() != run_dirs.local_run_id()


def test_resume_true_continues_the_newest_interrupted_run_and_links_its_checkpoints(tmp_path):
    _interrupted(tmp_path, "old", b"old", mtime=1_000)
    _interrupted(tmp_path, "new", b"new", mtime=2_000)
    with claim_run_dir(tmp_path, "finished"):
        (tmp_path / "finished" / "last.pt").write_bytes(b"finished")  # trained: never resumed
    with claim_run_dir(tmp_path, "c", resume=True) as run:
        assert run.resumed_from == "new" and run.resumed_tracking_id == "mlflow-new"
        assert (run.path / "last.pt").read_bytes() == b"new"
        assert (run.path / "best.pt").read_bytes() == b"new-best"
        assert read_run_file(run.path)["resumed_from"] == "new"
    assert read_run_file(tmp_path / "new") | {"started": None, "ended": None} == {
        "run_id": "new",
        "tracking_id": "mlflow-new",
        "status": "resumed",
        "resumed_from": None,
        "resumed_by": "c",
        "started": None,
        "error": "KeyboardInterrupt",
        "ended": None,
    }
    with claim_run_dir(tmp_path, "d", resume=True) as run:  # "new" is taken: the next newest
        assert run.resumed_from == "old"
    with claim_run_dir(tmp_path, "e", resume=True) as run:  # nothing left: a fresh start
        assert run.resumed_from is None and not (run.path / "last.pt").exists()


@pytest.mark.skipif(run_dirs.fcntl is None, reason="no file locks on this platform (documented)")
def test_a_run_still_training_elsewhere_is_not_resumed(tmp_path):
    with claim_run_dir(tmp_path, "live") as live:  # the lock is held while the block runs
        (live.path / "last.pt").write_bytes(b"live")
        with claim_run_dir(tmp_path, "other", resume=True) as run:
            assert run.resumed_from is None
        with (
            pytest.raises(RunInProgressError, match="still training"),
            claim_run_dir(tmp_path, "x", resume="live"),
        ):
            pass
    assert not (tmp_path / "x").exists()


def test_resume_by_run_id(tmp_path):
    _interrupted(tmp_path, "a")
    with claim_run_dir(tmp_path, "b") as b:
        (b.path / "last.pt").write_bytes(b"b")
    with claim_run_dir(tmp_path, "c", resume="b") as run:  # a finished run can be trained further
        assert run.resumed_from == "b" and (run.path / "last.pt").read_bytes() == b"b"
    with pytest.raises(FileNotFoundError, match=r"train.resume=zzz: no checkpoint .*runs with one: \['a'"):
        with claim_run_dir(tmp_path, "d", resume="zzz"):
            pass
    with pytest.raises(ValueError, match=r"resume must be"), claim_run_dir(tmp_path, "e", resume="../a"):
        pass
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_a_failed_or_killed_run_says_so_releases_its_lock_and_stays_resumable(tmp_path):
    """Issue 18, row 11: a failed run's folder kept its lock file and run.json said "training"."""
    with pytest.raises(OSError), claim_run_dir(tmp_path, "failed") as run:
        (run.path / "last.pt").write_bytes(b"failed")
        assert (run.path / ".lock").exists()
        raise OSError("cannot write checkpoint last.pt: the disk is full")
    record = read_run_file(tmp_path / "failed")
    assert record["status"] == "failed" and record["ended"]
    assert record["error"] == "OSError: cannot write checkpoint last.pt: the disk is full"
    assert not (tmp_path / "failed" / ".lock").exists()
    killed = _interrupted(tmp_path, "killed", mtime=1_000)
    assert read_run_file(killed)["status"] == "killed" and not (killed / ".lock").exists()
    with claim_run_dir(tmp_path, "ok"):
        pass
    assert read_run_file(tmp_path / "ok")["status"] == "trained" and sorted(os.listdir(tmp_path / "ok")) == [
        "run.json"
    ]
    assert [run_dirs.is_interrupted(tmp_path / r) for r in ("failed", "killed", "ok")] == [True, True, False]
    with claim_run_dir(tmp_path, "next", resume=True) as run:  # the newest unfinished one
        assert run.resumed_from == "failed"
    with claim_run_dir(tmp_path, "after", resume=True) as run:
        assert run.resumed_from == "killed"
    # continued once, a run is no longer interrupted; the run that continued it is, once it stops
    assert not run_dirs.is_interrupted(tmp_path / "failed") and not run_dirs.is_interrupted(
        tmp_path / "killed"
    )
    assert not any(tmp_path.glob("*/.lock"))  # neither the resumed runs nor their sources keep one


def test_a_resume_refused_by_accept_leaves_the_run_it_would_continue_untouched(tmp_path):
    """Issue 38: a resume refused for a changed architecture still marked the source run `resumed` and
    named the new folder's copy of last.pt."""
    source = _interrupted(tmp_path, "old")
    before = read_run_file(source)

    def refuse(folder):
        raise ValueError(f"{folder / 'last.pt'} was trained with another model")

    with pytest.raises(ValueError, match=rf"^{source / 'last.pt'} was trained"):
        with claim_run_dir(tmp_path, "new", resume=True, accept=refuse):
            pass
    assert read_run_file(source) == before and not (tmp_path / "new").exists()
    with claim_run_dir(tmp_path, "again", resume=True) as run:  # still the run to resume
        assert run.resumed_from == "old"
