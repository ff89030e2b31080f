"""Reading label pickles without running code from them.

A TAO/ST-GCN label file is ``pickle.dump((sample_names, labels))``: only lists, tuples, strings and
numbers. ``pickle.load`` would import and call whatever the file names (``os.system`` included), so
labels go through ``safe_load``, which builds plain containers and refuses every global lookup.
``safe_load(path, arrays=True)`` (pyskl/MMAction2 skeleton pickles) also allows dicts and numpy
arrays and scalars of non-object dtypes: the only lookups granted are numpy's array and scalar
reconstructors, ``numpy.dtype``/``ndarray`` and ``_codecs.encode`` (protocol-2 bytes).
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UnsafePickleError", "safe_load", "safe_loads", "torch_load"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than lists, tuples, strings, numbers, bool or None."""


def _numpy_attr(module: str, name: str) -> Any:
    return getattr(__import__(module, fromlist=[name]), name)


_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"
# (module, name) a pickle may look up with arrays=True -> the object given to it; numpy 1.x files
# name numpy.core, numpy 2 files numpy._core (both map to the installed numpy's functions).
ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
    **{
        (f"{core}.{module}", name): _numpy_attr(f"{_NUMPY_CORE}.{module}", name)
        for core in ("numpy.core", "numpy._core")
        for module, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        )
    },
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only built-in containers and scalars (and, with ``arrays``, numpy arrays): every
    other class or function lookup is refused."""

    def __init__(self, file: io.BufferedIOBase, source: str, arrays: bool = False) -> None:
        super().__init__(file)
        self.source = source
        self.arrays = arrays

    def find_class(self, module: str, name: str) -> Any:
        if self.arrays and (module, name) in ARRAY_GLOBALS:
            return ARRAY_GLOBALS[(module, name)]
        kind = (
            "skeleton pickles may hold only dicts, numpy arrays,"
            if self.arrays
            else ("label pickles may hold only")
        )
        raise UnsafePickleError(
            f"{self.source}: refusing to load {module}.{name}; {kind} "
            "lists, tuples, strings, ints, floats, bool and None"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in label pickles")


_ALLOWED = (list, tuple, str, int, float, bool, type(None))


def _check_types(value: Any, source: str, arrays: bool = False) -> None:
    """Refuse dicts, sets, bytes and the like (the unpickler builds them without a lookup);
    with ``arrays``, dicts and numpy arrays/scalars of non-object dtype are allowed too."""
    stack = [value]
    while stack:
        item = stack.pop()
        if arrays and isinstance(item, np.ndarray | np.generic):
            if item.dtype.hasobject:
                raise UnsafePickleError(f"{source}: a numpy array of Python objects is not allowed")
            continue
        if arrays and isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
            continue
        if not isinstance(item, _ALLOWED):
            allowed = "dicts, numpy arrays, " if arrays else ""
            raise UnsafePickleError(
                f"{source}: a {type(item).__name__} in the pickle; allowed are {allowed}lists, "
                "tuples, strings, ints, floats, bool and None"
            )
        if isinstance(item, list | tuple):
            stack.extend(item)


def safe_loads(data: bytes, source: str = "<bytes>", *, arrays: bool = False) -> Any:
    """Unpickle ``data`` allowing only lists, tuples, strings, ints, floats, bool and None
    (and with ``arrays`` dicts and numpy arrays/scalars of non-object dtype)."""
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), source, arrays).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # truncated or corrupt streams raise many different types
        raise UnsafePickleError(f"{source}: not a readable pickle ({error})") from error
    _check_types(value, source, arrays)
    return value


def safe_load(path: str | Path, *, arrays: bool = False) -> Any:
    """``safe_loads`` of the file at ``path``; errors name the file."""
    path = Path(path)
    return safe_loads(path.read_bytes(), str(path), arrays=arrays)


def torch_load(
    path: str | Path, *, map_location: Any = "cpu", mmap: bool = False, what: str = "PyTorch file"
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming ``path``.

    A file that asks for a global (code) is refused with :class:`UnsafePickleError`; a corrupt,
    truncated or empty file raises ValueError. torch's own advice to load with
    ``weights_only=False`` is not repeated.
    """
    import torch

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the weights-only unpickler's pickle-protocol notes
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as error:
            refused = [line for line in str(error).splitlines() if "GLOBAL" in line]
            if refused:
                raise UnsafePickleError(
                    f"{path}: refused by the weights-only loader ({refused[0].strip()}); "
                    "checkpoints may hold only tensors and plain values"
                ) from None
            stops = [line.strip() for line in str(error).splitlines() if "Unsupported" in line]
            detail = f"weights-only loader: {stops[0]}" if stops else "corrupt pickle stream"
        except Exception as error:  # truncated zips, empty files, bad headers raise many types
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            detail = lines[0] if lines else f"{type(error).__name__}, e.g. an empty file"
        raise ValueError(f"{path}: not a readable {what} ({detail})")
