"""A restricted unpickler for MANO model files and RHD annotations.

A pickle can run arbitrary code when loaded. This one resolves only the globals
that arrays need and nothing that computes, allocates on request or calls back:

* numpy arrays as numpy itself pickles them (``_reconstruct(ndarray, (0,), b'b')`` then
  the state, or ``_frombuffer``), dtypes, scalars; sets; ``_codecs.encode(text, 'latin1')``
  (how Python 3 writes bytes at protocol 2); ``copyreg._reconstructor(cls, object, None)``
  (how protocols 0 and 1 create objects of the classes below).
* scipy.sparse ``csc_matrix``, ``csr_matrix``, ``coo_matrix``: read as their pickled
  state only, validated (shape, index ranges, index pointers: see
  :func:`sparse_from_state`) and rebuilt as fresh scipy matrices. A crafted matrix with
  indices outside its shape would otherwise crash the process on first use.
* chumpy's ``Ch`` and ``Select`` (how the released ``MANO_*.pkl`` files store their
  arrays), evaluated exactly as chumpy does, without chumpy: ``Ch.r`` is
  ``asarray(atleast_1d(x), float64)``; ``Select.r`` is ``a.r.ravel()[idxs]`` reshaped to
  ``preferred_shape``, ``a`` being a ``Ch``, a ``Select`` or a plain array. Any other
  chumpy node is refused, naming the key and the node's type: it becomes a
  :class:`RefusedValue`, which raises that error when used as an array (so a key that
  nobody reads does not stop the rest of the file from loading).

Any other global is refused before anything runs (:class:`UnsafePickleError`). Errors
name the file and the key path (``MANO_RIGHT.pkl['shapedirs']``).
"""

from __future__ import annotations

import _codecs
import copyreg
import io
import os
import pickle
from typing import Any

import numpy as np
import scipy.sparse
from numpy._core.multiarray import _reconstruct as _np_reconstruct


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """Raised when a pickle asks for anything but arrays, or holds an invalid one."""


# ----------------------------------------------------------------------------- stand-ins


class _PickledObject:
    """Base of the stand-ins: created without arguments, holds the pickled state dict."""

    qualified_name = ""
    state: dict = {}  # replaced (never mutated) by __setstate__

    def __new__(cls, *args):
        if args:  # only a REDUCE call passes arguments; real pickles never call these classes
            raise UnsafePickleError(
                f"{cls.qualified_name} is called with arguments; this pickle may only hold "
                "its state"
            )
        return super().__new__(cls)

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"<state>": state}


class ChumpyNode(_PickledObject):
    """A chumpy object while unpickling; :func:`evaluate_chumpy` gives its value."""


class _Ch(ChumpyNode):
    qualified_name = "chumpy.ch.Ch"


class _Select(ChumpyNode):
    qualified_name = "chumpy.reordering.Select"


_CHUMPY_NODES: dict[str, type[ChumpyNode]] = {}


def _chumpy_class(module: str, name: str) -> type[ChumpyNode]:
    qualified = f"{module}.{name}"
    if qualified == _Ch.qualified_name:
        return _Ch
    if qualified == _Select.qualified_name:
        return _Select
    if qualified not in _CHUMPY_NODES:  # any other node: refused when evaluated
        _CHUMPY_NODES[qualified] = type(name, (ChumpyNode,), {"qualified_name": qualified})
    return _CHUMPY_NODES[qualified]


class PickledSparse(_PickledObject):
    """A scipy.sparse matrix while unpickling; :func:`sparse_from_state` validates it."""

    format = ""


_SPARSE_MODULES = (
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.coo",
    "scipy.sparse._coo",
)
_SPARSE_CLASSES = {
    name: type(
        name, (PickledSparse,), {"format": name[:3], "qualified_name": f"scipy.sparse.{name}"}
    )
    for name in ("csc_matrix", "csr_matrix", "coo_matrix")
}


# ----------------------------------------------------------------------------- guarded globals


class _NdarrayType:
    """Stands for ``numpy.ndarray`` as an argument of ``_reconstruct``; it cannot be called."""


def _reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct``, for the empty placeholder array that numpy's pickles create."""
    if subtype is not _NdarrayType or np.prod(np.asarray(shape, np.int64)) != 0:
        raise UnsafePickleError(
            f"numpy _reconstruct({subtype!r}, {shape!r}, ...) is not how numpy pickles arrays"
        )
    return _np_reconstruct(np.ndarray, shape, dtype)


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` for the stand-in classes only (protocols 0 and 1)."""
    if not (isinstance(cls, type) and issubclass(cls, _PickledObject)) or base is not object:
        raise UnsafePickleError(f"copyreg._reconstructor({cls!r}, {base!r}) is not allowed")
    return copyreg._reconstructor(cls, base, state)


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 uses it to pickle bytes at protocol 2: latin-1 only."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return _codecs.encode(obj, encoding, errors)


_GLOBALS = {
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file, encoding="latin1")
        self._where = where

    def find_class(self, module: str, name: str):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return _SPARSE_CLASSES[name]
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_class(module, name)
        raise UnsafePickleError(
            f"{self._where}: refusing to load global '{module}.{name}': this pickle may hold "
            "only numpy arrays, scipy.sparse matrices and chumpy arrays"
        )


# ----------------------------------------------------------------------------- validation


def _index_array(state: dict, key: str, where: str) -> np.ndarray:
    value = state.get(key)
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        got = type(value).__name__ if not isinstance(value, np.ndarray) else value.dtype
        raise UnsafePickleError(
            f"{where}: sparse matrix field '{key}' must be a 1-D integer array, got {got}"
        )
    return value.astype(np.int64)


def sparse_from_state(obj: PickledSparse, where: str) -> scipy.sparse.spmatrix:
    """A fresh, valid scipy matrix from a pickled one's state; else UnsafePickleError.

    Checks: the shape is two non-negative integers (``_shape``, or ``shape`` in old
    scipy versions); ``data`` is a 1-D numeric array; csc/csr: ``indptr`` has one entry
    per column/row plus one, starts at 0, never decreases and ends at ``len(indices)
    == len(data)``, ``indices`` lie in ``[0, rows)`` / ``[0, columns)``; coo: ``row``,
    ``col`` and ``data`` have one length and lie inside the shape.
    """
    state = obj.state
    shape = state.get("_shape", state.get("shape"))
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(n, int | np.integer) and n >= 0 for n in shape)
    ):
        raise UnsafePickleError(
            f"{where}: sparse matrix shape must be two integers >= 0, got {shape!r}"
        )
    rows, cols = int(shape[0]), int(shape[1])
    data = state.get("data")
    if not isinstance(data, np.ndarray) or data.ndim != 1 or data.dtype.kind not in "biuf":
        raise UnsafePickleError(f"{where}: sparse matrix field 'data' must be a 1-D numeric array")
    if obj.format == "coo":
        row, col = _index_array(state, "row", where), _index_array(state, "col", where)
        if not len(row) == len(col) == len(data):
            raise UnsafePickleError(
                f"{where}: coo matrix has {len(row)} rows, {len(col)} columns and {len(data)} "
                "values; they must be equal"
            )
        for name, idx, n in (("row", row, rows), ("col", col, cols)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise UnsafePickleError(
                    f"{where}: coo matrix '{name}' indices span [{idx.min()}, {idx.max()}], "
                    f"outside [0, {n}) of its shape {(rows, cols)}"
                )
        return scipy.sparse.coo_matrix((data, (row, col)), shape=(rows, cols))
    major, minor = (cols, rows) if obj.format == "csc" else (rows, cols)
    indptr, indices = _index_array(state, "indptr", where), _index_array(state, "indices", where)
    axis = "column" if obj.format == "csc" else "row"
    if len(indptr) != major + 1:
        raise UnsafePickleError(
            f"{where}: {obj.format} matrix of shape {(rows, cols)} needs {major + 1} index "
            f"pointers (one per {axis} plus one), got {len(indptr)}"
        )
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise UnsafePickleError(
            f"{where}: {obj.format} matrix index pointers must start at 0 and never decrease"
        )
    if not indptr[-1] == len(indices) == len(data):
        raise UnsafePickleError(
            f"{where}: {obj.format} matrix index pointers end at {indptr[-1]} but it holds "
            f"{len(indices)} indices and {len(data)} values"
        )
    if len(indices) and (indices.min() < 0 or indices.max() >= minor):
        raise UnsafePickleError(
            f"{where}: {obj.format} matrix indices span [{indices.min()}, {indices.max()}], "
            f"outside [0, {minor}) of its shape {(rows, cols)}"
        )
    cls = scipy.sparse.csc_matrix if obj.format == "csc" else scipy.sparse.csr_matrix
    return cls((data, indices, indptr), shape=(rows, cols))


# ----------------------------------------------------------------------------- chumpy


def _chumpy_r(value: Any) -> np.ndarray:
    """chumpy's ``r``: ``asarray(atleast_1d(value), float64, order='C')``."""
    return np.asarray(np.atleast_1d(value), dtype=np.float64, order="C")


def evaluate_chumpy(node: ChumpyNode, where: str, _seen: frozenset = frozenset()) -> np.ndarray:
    """The value of a pickled ``Ch`` or ``Select`` (nested), as chumpy's ``.r`` gives it."""
    if id(node) in _seen:
        raise UnsafePickleError(f"{where}: a chumpy node refers to itself")
    seen = _seen | {id(node)}

    def value(term: str) -> Any:
        if term not in node.state:
            raise UnsafePickleError(
                f"{where}: {node.qualified_name} has no '{term}' (fields {sorted(node.state)})"
            )
        v = node.state[term]
        return evaluate_chumpy(v, where, seen) if isinstance(v, ChumpyNode) else v

    try:
        if isinstance(node, _Ch):
            return _chumpy_r(value("x"))
        if isinstance(node, _Select):
            result = _chumpy_r(value("a")).ravel()[np.asarray(value("idxs"))].copy()
            if "preferred_shape" in node.state:
                result = result.reshape(value("preferred_shape"))
            return _chumpy_r(result)
    except (IndexError, ValueError, TypeError) as e:
        raise UnsafePickleError(f"{where}: {node.qualified_name} cannot be evaluated ({e})") from e
    raise UnsafePickleError(
        f"{where}: chumpy node {node.qualified_name} cannot be evaluated without chumpy "
        "(handfit evaluates chumpy.ch.Ch and chumpy.reordering.Select only); with chumpy "
        "installed, save the arrays as .npz: np.savez(path, **{k: np.asarray(v) for k, v in "
        "model.items()})"
    )


# ----------------------------------------------------------------------------- loading


class RefusedValue:
    """A pickled value handfit cannot evaluate; using it as an array raises why."""

    def __init__(self, message: str):
        self.message = message

    def __array__(self, dtype=None, copy=None):
        raise UnsafePickleError(self.message)

    def __repr__(self) -> str:
        return f"<refused: {self.message}>"


def _to_plain(obj: Any, where: str) -> Any:
    """Replaces stand-ins by numpy arrays and valid scipy matrices, through containers."""
    if isinstance(obj, ChumpyNode):
        try:
            return evaluate_chumpy(obj, where)
        except UnsafePickleError as e:
            return RefusedValue(str(e))
    if isinstance(obj, PickledSparse):
        return sparse_from_state(obj, where)
    if isinstance(obj, dict):
        return {k: _to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        out = np.empty(obj.shape, object)
        for i, v in np.ndenumerate(obj):
            out[i] = _to_plain(v, f"{where}[{', '.join(map(str, i))}]")
        return out
    return obj


def loads(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickles ``data`` allowing arrays only; ``where`` names the source in errors."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError as e:
        if str(e).startswith(where):
            raise
        raise UnsafePickleError(f"{where}: {e}") from e
    except Exception as e:  # truncated or corrupt files, not-a-pickle
        raise pickle.UnpicklingError(f"{where}: not a readable pickle ({e})") from e
    return _to_plain(obj, where)


def load(path: str | os.PathLike) -> Any:
    """Unpickles the file at ``path`` allowing arrays only (see the module docstring)."""
    with open(path, "rb") as f:
        return loads(f.read(), os.fspath(path))
