"""Load dataset annotation pickles without running code from them.

``pickle.load`` calls whatever callable the file names, so a tampered ``anno_*.pickle`` could run
``os.system`` on load. :func:`load_annotation_pickle` admits only the handful of globals that
pickled numpy arrays need and refuses everything else before it is called.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

# (module, name) pairs that numpy arrays and scalars pickle through, in NumPy 1.x and 2.x (protocol 5
# arrays go through `_frombuffer`, which refuses object dtypes), plus `_codecs.encode`, which Python 2
# pickles (the original RHD release) use for byte strings.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class UnsafePickleError(ValueError):
    """The pickle asks for something other than plain containers and numpy arrays."""


class NestingError(ValueError):
    """The pickle would build containers nested implausibly deep."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # latin1 reads Python 2 numpy pickles
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._path}: refusing to unpickle global '{module}.{name}'; annotation files may "
            "hold only dicts, lists, numbers, strings and numpy arrays"
        )


# Annotation files nest a few levels (dict of samples -> dict of arrays). The limit keeps the walk
# below, and NumPy's array conversion after it, away from Python's recursion limit.
MAX_NESTING = 32


def _check_plain(value: Any, path: Path) -> None:
    """Refuse anything but plain containers, numbers, strings and numeric arrays, nested <= MAX_NESTING.

    Iterative, so a pickle nested a million levels deep fails with a message, not a RecursionError.
    """
    pending: list[tuple[Any, str, int]] = [(value, "content", 0)]
    while pending:
        value, where, depth = pending.pop()
        if depth > MAX_NESTING:
            raise ValueError(
                f"{path}: not a readable pickle (containers nested more than {MAX_NESTING} levels deep "
                f"at {where[:200]}...; annotation files nest only a few)"
            )
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise UnsafePickleError(
                    f"{path}: {where} is an array of dtype {value.dtype}, expected numbers"
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((key, f"{where} key", depth + 1))
                pending.append((item, f"{where}[{key!r}]", depth + 1))
        elif isinstance(value, list | tuple):
            pending.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
        elif not isinstance(value, int | float | str | bytes | bool | np.generic | None):
            raise UnsafePickleError(f"{path}: {where} has unexpected type {type(value).__name__}")


# How each opcode changes the nesting depth of what it pushes (see _check_opcode_nesting).
_BUILDS = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "LIST", "DICT", "FROZENSET", "REDUCE", "NEWOBJ",
           "NEWOBJ_EX", "OBJ", "INST"}  # fmt: skip
_EXTENDS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_EMPTY = {"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
PROGRESS_BYTES = 16 * 2**20  # the check shows a progress bar for files this large (a few seconds)


def _check_opcode_nesting(data: bytes, path: Path) -> None:
    """Refuse a pickle that would build containers nested more than MAX_NESTING deep, BEFORE loading.

    The C unpickler hashes dict keys as it builds them, and hashing a tuple nested a million levels
    deep overflows the C stack: the process dies (a segfault) with no message. So the opcodes are
    replayed first on a stack of nesting depths (pickletools, no object is built): for a file the
    size of RHD's anno_training.pickle (67 MB) the whole load takes 4.2 s, most of it this check, once
    per preprocessing run (with a progress bar).
    """
    stack: list[int | None] = []  # nesting depth per stack item; None marks a MARK
    memo: dict[int, int | None] = {}
    progress = tqdm(
        total=len(data),
        desc=f"checking {path.name}",
        unit="B",
        unit_scale=True,
        leave=False,
        mininterval=1.0,
        disable=len(data) < PROGRESS_BYTES,
    )
    try:
        for step, (opcode, arg, position) in enumerate(pickletools.genops(data)):
            if step % 65536 == 0:
                progress.update(position - progress.n)
            name, before = opcode.name, opcode.stack_before
            if name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
                continue
            if name in _MEMO_PUT:
                memo[arg] = stack[-1]
                continue
            if pickletools.markobject in before:  # [base..., mark, stackslice]
                mark = len(stack) - 1 - stack[::-1].index(None)
                items = stack[mark + 1 :]
                del stack[mark:]
                bases = [stack.pop() for _ in range(before.index(pickletools.markobject))]
            else:
                items = stack[len(stack) - len(before) :] if before else []
                del stack[len(stack) - len(before) :]
                bases = []
            if name == "MARK":
                stack.append(None)
                continue
            if name in _MEMO_GET:
                pushed = [memo[arg]]
            elif name == "DUP":
                pushed = items * 2
            elif name in _EXTENDS:  # the container (first) holds the others one level down
                container, *others = bases + items
                pushed = [max([container or 0, *((d or 0) + 1 for d in others)])]
            elif name in _BUILDS:
                pushed = [max([(d or 0) for d in items], default=0) + 1]
            elif name in _EMPTY:
                pushed = [1]
            else:
                pushed = [0] * len(opcode.stack_after)
            if pushed and (pushed[0] or 0) > MAX_NESTING:
                raise NestingError(
                    f"{path}: not a readable pickle (containers nested more than {MAX_NESTING} levels "
                    f"deep at byte {position}; annotation files nest only a few)"
                )
            stack.extend(pushed)
    except NestingError:
        raise
    except (ValueError, IndexError, KeyError) as error:  # truncated or malformed opcode streams
        raise ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from error
    finally:
        progress.close()


def load_annotation_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only plain containers, numbers, strings and numpy arrays.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the file names any other global (its code never runs) or holds other types.
        ValueError: the file is truncated, not a pickle, or nested implausibly deep.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    raw = path.read_bytes()
    _check_opcode_nesting(raw, path)
    with io.BytesIO(raw) as file:
        try:
            data = _RestrictedUnpickler(file, path).load()
        except UnsafePickleError:
            raise
        except Exception as error:  # truncated or corrupt pickles raise many different types
            raise ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from error
    _check_plain(data, path)
    return data
