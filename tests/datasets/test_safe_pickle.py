import os
import pickle

import numpy as np
import pytest

from mle_hand_pipeline.datasets.safe_pickle import UnsafePickleError, load_annotation_pickle


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loads_numpy_dicts_of_both_protocols(tmp_path):
    data = {
        0: {"uv_vis": np.ones((42, 3), np.float32), "K": np.eye(3, dtype=np.float32)},
        1: {"x": [1, 2.5, "s"]},
    }
    for protocol in (2, 4):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_annotation_pickle(path)
        np.testing.assert_array_equal(loaded[0]["uv_vis"], data[0]["uv_vis"])
        assert loaded[0]["uv_vis"].dtype == np.float32


def test_malicious_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "anno_training.pickle"
    path.write_bytes(pickle.dumps({0: {"uv_vis": _Exploit(marker)}}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"anno_training.pickle.*posix.system|os.system|system"):
        load_annotation_pickle(path)
    assert not marker.exists()


def test_refuses_arbitrary_classes(tmp_path):
    path = tmp_path / "a.pickle"
    path.write_bytes(pickle.dumps({0: {1, 2}.__class__}, protocol=4))  # the global 'builtins.set'
    with pytest.raises(UnsafePickleError, match=r"builtins.set"):
        load_annotation_pickle(path)


def test_refuses_object_arrays(tmp_path):
    path = tmp_path / "a.pickle"
    path.write_bytes(pickle.dumps({0: np.array([1, "a"], dtype=object)}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"dtype object"):
        load_annotation_pickle(path)


def test_truncated_and_missing(tmp_path):
    path = tmp_path / "a.pickle"
    path.write_bytes(pickle.dumps({0: np.ones((42, 3), np.float32)}, protocol=4)[:-20])
    with pytest.raises(ValueError, match=r"a.pickle: not a readable pickle"):
        load_annotation_pickle(path)
    with pytest.raises(FileNotFoundError, match=r"missing.pickle"):
        load_annotation_pickle(tmp_path / "missing.pickle")
