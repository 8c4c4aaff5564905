"""A restricted unpickler for MANO model files and RHD annotations.

A pickle can run arbitrary code when loaded. This one resolves only the globals
that arrays need (numpy's array reconstruction, scipy.sparse matrices) and
chumpy's array classes, which it turns into plain numpy arrays so that chumpy
need not be installed. Any other global is refused before anything runs.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np

# (module, name) pairs that may be resolved while unpickling.
_ALLOWED = {
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("builtins", "object"),
    ("__builtin__", "object"),
    ("builtins", "set"),
    ("__builtin__", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "frozenset"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_SPARSE_MODULES = (
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.coo",
    "scipy.sparse._coo",
)
_SPARSE_CLASSES = ("csc_matrix", "csr_matrix", "coo_matrix")


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a pickle asks for anything but arrays."""


class ChumpyArray:
    """Stands in for a chumpy object while unpickling; holds its state dict."""

    def __init__(self, *args):
        self.state: dict = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}

    def to_numpy(self, where: str) -> np.ndarray:
        if "x" not in self.state:
            raise UnsafePickleError(
                f"{where}: a chumpy expression (fields {sorted(self.state)}) cannot be evaluated "
                "without chumpy; convert the file to .npz with chumpy installed"
            )
        return np.asarray(self.state["x"])


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file, encoding="latin1")
        self._where = where

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyArray
        raise UnsafePickleError(
            f"{self._where}: refusing to load global '{module}.{name}': this pickle may hold "
            "only numpy arrays, scipy.sparse matrices and chumpy arrays"
        )


def _to_plain(obj: Any, where: str) -> Any:
    """Replaces chumpy stand-ins by numpy arrays, recursively through dicts, lists, tuples."""
    if isinstance(obj, ChumpyArray):
        return obj.to_numpy(where)
    if isinstance(obj, dict):
        return {k: _to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    return obj


def loads(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickles ``data`` allowing arrays only; ``where`` names the source in errors."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or corrupt files, not-a-pickle
        raise pickle.UnpicklingError(f"{where}: not a readable pickle ({e})") from e
    return _to_plain(obj, where)


def load(path: str | os.PathLike) -> Any:
    """Unpickles the file at ``path`` allowing arrays only (see the module docstring)."""
    with open(path, "rb") as f:
        return loads(f.read(), os.fspath(path))
