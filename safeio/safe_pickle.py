"""Reading label pickles without running code from them.

A TAO/ST-GCN label file is ``pickle.dump((sample_names, labels))``: only lists, tuples, strings and
numbers. ``pickle.load`` would import and call whatever the file names (``os.system`` included), so
labels go through ``safe_load``, which builds plain containers and refuses every global lookup.
``safe_load(path, arrays=True)`` (pyskl/MMAction2 skeleton pickles) also allows dicts and numpy
arrays and scalars of plain number and string dtypes: the only lookups granted are numpy's array
and scalar reconstructors, ``numpy.dtype``/``ndarray`` and ``_codecs.encode`` (protocol-2 bytes),
each replaced by a guard that checks the claimed shape and dtype before numpy allocates: the
arrays of one file may together hold no more bytes than the file has.
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
_reconstruct = _numpy_attr(f"{_NUMPY_CORE}.multiarray", "_reconstruct")
_scalar = _numpy_attr(f"{_NUMPY_CORE}.multiarray", "scalar")
# dtype kinds an array or scalar in a pickle may have: bool, integers, floats, complex, fixed-width
# bytes and text. Object, structured and void dtypes are refused (numpy trusts a pickled object
# array's data, and a mismatched one crashes the interpreter).
ALLOWED_KINDS = frozenset("biufcSU?")
# Containers nested deeper than this are refused (pyskl pickles nest 4 deep).
MAX_DEPTH = 64
# Array bytes a pickle may claim beyond its own size (tiny headers, empty arrays).
SLACK_BYTES = 1 << 16


class _Budget:
    """Array bytes one load may still materialise: the file's size (the raw data of every array
    is in the file, once) plus a small slack. Each claimed allocation is checked before numpy
    makes it, so a 168-byte file cannot claim 2 GiB."""

    def __init__(self, source: str, size: int) -> None:
        self.source, self.left = source, size + SLACK_BYTES

    def dtype(self, dtype: Any) -> np.dtype:
        """A fresh, plain dtype equal to ``dtype`` (a pickled dtype's flags are not trusted)."""
        try:
            dtype = np.dtype(dtype)
        except Exception as error:
            raise UnsafePickleError(f"{self.source}: bad numpy dtype ({error})") from None
        if dtype.kind not in ALLOWED_KINDS or dtype.hasobject or dtype.fields or dtype.subdtype:
            raise UnsafePickleError(
                f"{self.source}: numpy dtype {dtype} is not allowed (only plain numbers and "
                "strings)"
            )
        return np.dtype(dtype.str)

    def take(self, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
        """``shape`` as a tuple of ints, after charging its bytes to the budget."""
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise UnsafePickleError(f"{self.source}: bad numpy array shape {shape!r}")
        count = 1
        for n in shape:
            count *= n
        claimed = count * dtype.itemsize
        if claimed > self.left:
            raise UnsafePickleError(
                f"{self.source}: a numpy array claims shape {shape} {dtype} "
                f"({claimed:,} bytes), more than the file can hold"
            )
        self.left -= claimed
        return shape


class _GuardedArray(np.ndarray):
    """The arrays a load builds: ``__setstate__`` checks the claimed shape and dtype against the
    load's budget before numpy allocates; converted to plain ``np.ndarray`` after the load."""

    def __setstate__(self, state: Any) -> None:
        budget: _Budget = self.__dict__["budget"]
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError(f"{budget.source}: bad numpy array state")
        *head, shape, dtype, fortran, data = state
        dtype = budget.dtype(dtype)
        if not isinstance(data, bytes):
            raise UnsafePickleError(f"{budget.source}: numpy array data must be bytes")
        shape = budget.take(shape, dtype)
        super().__setstate__((*head, shape, dtype, bool(fortran), data))


def _empty_bytes() -> bytes:
    return b""


class _ArrayFactory:
    """What a load finds for numpy's array globals; every call is charged to ``budget``."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget

    def ndarray(self, shape: Any = (0,), dtype: Any = float) -> np.ndarray:
        """``numpy.ndarray(shape, dtype)`` (no buffer, offset or strides)."""
        return self._new(shape, dtype)

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """``numpy.core.multiarray._reconstruct(ndarray, shape, dtype)``."""
        if subtype != self.ndarray:  # the bound method the file got for numpy.ndarray
            raise UnsafePickleError(f"{self.budget.source}: only numpy.ndarray may be rebuilt")
        return self._new(shape, dtype)

    def _new(self, shape: Any, dtype: Any) -> np.ndarray:
        dtype = self.budget.dtype(dtype)
        array = _reconstruct(_GuardedArray, self.budget.take(shape, dtype), dtype)
        array.__dict__["budget"] = self.budget
        return array

    def dtype(self, obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
        """``numpy.dtype(obj, align, copy)`` for a plain type name; always a copy, since the file
        then sets its state (numpy's own dtype singletons are never touched)."""
        if not isinstance(obj, str):
            raise UnsafePickleError(f"{self.budget.source}: bad numpy dtype {obj!r}")
        return np.dtype(self.budget.dtype(obj), bool(align), True)

    def scalar(self, dtype: Any, data: Any = None) -> np.generic:
        """``numpy.core.multiarray.scalar(dtype, bytes)``."""
        dtype = self.budget.dtype(dtype)
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise UnsafePickleError(f"{self.budget.source}: bad numpy scalar data")
        return _scalar(dtype, data)

    def frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        """``numpy.core.numeric._frombuffer``: a view of bytes that are in the file."""
        dtype = self.budget.dtype(dtype)
        if not isinstance(buffer, bytes | bytearray) or order not in ("C", "F"):
            raise UnsafePickleError(f"{self.budget.source}: bad numpy buffer")
        try:
            return np.frombuffer(buffer, dtype).reshape(self.budget.take(shape, dtype), order=order)
        except ValueError as error:
            raise UnsafePickleError(f"{self.budget.source}: bad numpy buffer ({error})") from None

    def globals(self) -> dict[tuple[str, str], Any]:
        """(module, name) a pickle may look up with arrays=True -> what it gets; numpy 1.x files
        name numpy.core, numpy 2 files numpy._core."""
        found: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): self.ndarray,
            ("numpy", "dtype"): self.dtype,
            ("_codecs", "encode"): __import__("codecs").encode,
            ("__builtin__", "bytes"): _empty_bytes,  # protocol 2 writes b"" as bytes()
            ("builtins", "bytes"): _empty_bytes,
        }
        for core in ("numpy.core", "numpy._core"):
            found[(f"{core}.multiarray", "_reconstruct")] = self.reconstruct
            found[(f"{core}.multiarray", "scalar")] = self.scalar
            found[(f"{core}.numeric", "_frombuffer")] = self.frombuffer
        return found


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only built-in containers and scalars (and, with ``arrays``, numpy arrays within the
    file's size): every other class or function lookup is refused."""

    def __init__(
        self, file: io.BufferedIOBase, source: str, arrays: bool = False, size: int = 0
    ) -> None:
        super().__init__(file)
        self.source = source
        self.arrays = _ArrayFactory(_Budget(source, size)).globals() if arrays else None

    def find_class(self, module: str, name: str) -> Any:
        if self.arrays is not None and (module, name) in self.arrays:
            return self.arrays[(module, name)]
        kind = (
            "skeleton pickles may hold only dicts, numpy arrays,"
            if self.arrays is not None
            else ("label pickles may hold only")
        )
        raise UnsafePickleError(
            f"{self.source}: refusing to load {module}.{name}; {kind} "
            "lists, tuples, strings, ints, floats, bool and None"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in label pickles")


_ALLOWED = (list, tuple, str, int, float, bool, type(None))


class _Checker:
    """Checks the loaded value's types and turns guarded arrays into plain ones. Dicts, sets,
    bytes and the like are built without a lookup, so they are refused here; with ``arrays``
    dicts and numpy arrays/scalars are allowed. Each container is visited once (shared
    references cost nothing), and nesting deeper than :data:`MAX_DEPTH` (or a cycle) is refused."""

    def __init__(self, source: str, arrays: bool) -> None:
        self.source, self.arrays = source, arrays
        self.seen: dict[int, Any] = {}

    def plain(self, item: Any, depth: int = 0) -> Any:
        if isinstance(item, str | int | float | bool | type(None)):
            return item
        if id(item) in self.seen:
            return self.seen[id(item)]
        if depth > MAX_DEPTH:
            raise UnsafePickleError(
                f"{self.source}: containers nested deeper than {MAX_DEPTH} levels (or a cycle)"
            )
        self.seen[id(item)] = item  # a cycle finds itself here and ends at the depth limit
        result = self._convert(item, depth + 1)
        self.seen[id(item)] = result
        return result

    def _convert(self, item: Any, depth: int) -> Any:
        if self.arrays and isinstance(item, np.ndarray | np.generic):
            if item.dtype.hasobject:
                raise UnsafePickleError(f"{self.source}: a numpy array of Python objects")
            return item.view(np.ndarray) if isinstance(item, _GuardedArray) else item
        if isinstance(item, list):
            item[:] = [self.plain(value, depth) for value in item]
            return item
        if isinstance(item, tuple):
            return tuple(self.plain(value, depth) for value in item)
        if self.arrays and isinstance(item, dict):
            pairs = [(self.plain(k, depth), self.plain(v, depth)) for k, v in item.items()]
            item.clear()
            item.update(pairs)
            return item
        allowed = "dicts, numpy arrays, " if self.arrays else ""
        raise UnsafePickleError(
            f"{self.source}: a {type(item).__name__} in the pickle; allowed are {allowed}lists, "
            "tuples, strings, ints, floats, bool and None"
        )


def safe_loads(data: bytes, source: str = "<bytes>", *, arrays: bool = False) -> Any:
    """Unpickle ``data`` allowing only lists, tuples, strings, ints, floats, bool and None
    (and with ``arrays`` dicts and numpy arrays/scalars of plain number or string dtypes, whose
    bytes together may not exceed ``len(data)``: what a file claims is checked before numpy
    allocates it)."""
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), source, arrays, len(data)).load()
    except UnsafePickleError:
        raise
    except RecursionError:
        raise UnsafePickleError(f"{source}: containers nested too deeply") from None
    except Exception as error:  # truncated or corrupt streams raise many different types
        raise UnsafePickleError(f"{source}: not a readable pickle ({error})") from error
    try:
        return _Checker(source, arrays).plain(value)
    except RecursionError:
        raise UnsafePickleError(f"{source}: containers nested too deeply") from None


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
