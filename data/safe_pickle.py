"""Reading label pickles without running code from them.

A TAO/ST-GCN label file is ``pickle.dump((sample_names, labels))``: only lists, tuples, strings and
numbers. ``pickle.load`` would import and call whatever the file names (``os.system`` included), so
labels go through ``safe_load``, which builds plain containers and refuses every global lookup.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

__all__ = ["UnsafePickleError", "safe_load", "safe_loads", "torch_load"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than lists, tuples, strings, numbers, bool or None."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only built-in containers and scalars: every class or function lookup is refused."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"{self.source}: refusing to load {module}.{name}; label pickles may hold only "
            "lists, tuples, strings, ints, floats, bool and None"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in label pickles")


_ALLOWED = (list, tuple, str, int, float, bool, type(None))


def _check_types(value: Any, source: str) -> None:
    """Refuse dicts, sets, bytes and the like (the unpickler builds them without a lookup)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if not isinstance(item, _ALLOWED):
            raise UnsafePickleError(
                f"{source}: a {type(item).__name__} in a label pickle; allowed are lists, tuples, "
                "strings, ints, floats, bool and None"
            )
        if isinstance(item, list | tuple):
            stack.extend(item)


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only lists, tuples, strings, ints, floats, bool and None."""
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # truncated or corrupt streams raise many different types
        raise UnsafePickleError(f"{source}: not a readable pickle ({error})") from error
    _check_types(value, source)
    return value


def safe_load(path: str | Path) -> Any:
    """``safe_loads`` of the file at ``path``; errors name the file."""
    path = Path(path)
    return safe_loads(path.read_bytes(), str(path))


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
