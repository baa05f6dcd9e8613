import os
import pickle
import subprocess
import sys

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


def _deep_tuple_key_pickle(depth: int) -> bytes:
    """{((...(0,)...),): 1} with the tuple nested ``depth`` deep, as protocol-4 opcodes: TUPLE1 repeated
    (what pickle.dumps cannot write: it recurses)."""
    return b"\x80\x04}" + b"K\x00" + b"\x85" * depth + b"K\x01" + b"s."


def test_a_deeply_nested_dict_key_is_refused_before_it_is_built(tmp_path):
    # Loading this with the C unpickler hashes the million-deep tuple and kills the process (SIGSEGV);
    # it runs in a child process so that a regression fails this test instead of the whole suite.
    path = tmp_path / "anno_training.pickle"
    path.write_bytes(_deep_tuple_key_pickle(1_000_000))
    code = (
        "import sys\nfrom mle_hand_pipeline.datasets.safe_pickle import load_annotation_pickle\n"
        "try:\n    load_annotation_pickle(sys.argv[1])\nexcept ValueError as error:\n    print(error)\n"
    )
    command = [sys.executable, "-c", code, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "anno_training.pickle: not a readable pickle (containers nested more than 32" in done.stdout


def test_nesting_is_measured_on_the_opcodes_of_every_container_kind(tmp_path):
    shallow = {0: {"uv_vis": np.zeros((42, 3)), "names": ("a", ("b", ["c", {"d": 1}]))}}
    path = tmp_path / "ok.pickle"
    for protocol in (0, 2, 4, 5):
        path.write_bytes(pickle.dumps(shallow, protocol=protocol))
        assert load_annotation_pickle(path)[0]["names"][1][1][1] == {"d": 1}
    deep: list = [0]
    for _ in range(40):  # deeper than the limit, shallow enough for pickle.dumps
        deep = [deep]
    for value in (deep, {"k": deep}, (deep,)):
        path.write_bytes(pickle.dumps(value, protocol=4))
        with pytest.raises(ValueError, match=r"ok.pickle: not a readable pickle \(containers nested more"):
            load_annotation_pickle(path)


def test_a_pickle_that_underflows_its_stack_is_refused(tmp_path):
    path = tmp_path / "a.pickle"
    path.write_bytes(b"\x80\x04s.")  # SETITEM with nothing to set
    with pytest.raises(ValueError, match=r"a.pickle: not a readable pickle"):
        load_annotation_pickle(path)
