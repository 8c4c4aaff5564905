"""Writes pickles the way Python 2 wrote the released MANO files (and RHD's annotations).

The released ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` were written by Python 2 at
protocol 2 with chumpy and scipy of that time. :class:`Py2Pickler` emits the same
opcodes Python 2's pickle did for the same objects:

* ``str`` as Python 2's byte strings (SHORT_BINSTRING / BINSTRING, read back as latin-1),
  never Python 3's BINUNICODE, nor ``_codecs.encode`` for bytes;
* numpy arrays as numpy 1.x's ``ndarray.__reduce__`` (numpy/core/src/multiarray/methods.c
  ``array_reduce``): ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')`` then
  the state ``(1, shape, dtype, is_fortran, raw bytes)``; dtypes as ``arraydescr_reduce``
  of that time: ``numpy.dtype('f8', 0, 1)`` with state ``(3, '<', None, None, None, -1,
  -1, 0)``;
* objects without ``__reduce__`` (chumpy's ``Ch``/``Select``, scipy's ``csc_matrix``) by
  ``object.__reduce_ex__(2)``: GLOBAL class, EMPTY_TUPLE, NEWOBJ, then the state dict
  (``__getstate__()`` or ``__dict__``) and BUILD; sets as ``__builtin__.set([...])``.

The stand-in classes below are registered under chumpy's and scipy's module and class
names; their state is what the real classes pickle: chumpy's ``Ch.__getstate__`` is its
``__dict__`` less ``_parents`` and ``_cache`` (chumpy/ch.py); ``Ch.__getitem__`` builds a
``Select(a=self, idxs, preferred_shape)`` (chumpy/ch.py, chumpy/reordering.py); scipy
0.x's csc_matrix holds ``format``, ``_shape``, ``maxprint``, ``indices``, ``indptr``,
``data`` (scipy/sparse/base.py ``spmatrix.__init__``).
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types

import numpy as np


class Global:
    """A module-level name, written as a GLOBAL opcode (``module\\nname\\n``)."""

    def __init__(self, module: str, name: str):
        self.__module__, self.__qualname__ = module, name

    def __call__(self, *args):
        raise TypeError(f"{self.__module__}.{self.__qualname__} is only a name to write")


NUMPY_RECONSTRUCT = Global("numpy.core.multiarray", "_reconstruct")
NUMPY_NDARRAY = Global("numpy", "ndarray")
NUMPY_DTYPE = Global("numpy", "dtype")
_PY2_NAMES = {"builtins": "__builtin__", "copyreg": "copy_reg"}


class Py2Pickler(pickle._Pickler):
    """Protocol 2, as Python 2 (with numpy 1.x) wrote it; see the module docstring."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = _PY2_NAMES.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str
    dispatch[Global] = save_global
    dispatch[type] = save_global

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            state = (1, a.shape, a.dtype, False, a.tobytes())
            return NUMPY_RECONSTRUCT, (NUMPY_NDARRAY, (0,), b"b"), state
        if isinstance(obj, np.dtype):
            endian = "<" if obj.byteorder == "=" else obj.byteorder
            state = (3, endian, None, None, None, -1, -1, 0)
            return NUMPY_DTYPE, (f"{obj.kind}{obj.itemsize}", 0, 1), state
        return NotImplemented


def dumps_py2(obj) -> bytes:
    """``obj`` pickled as Python 2 wrote it (protocol 2)."""
    buffer = io.BytesIO()
    Py2Pickler(buffer).dump(obj)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- chumpy stand-ins


class Ch:
    """chumpy.ch.Ch holding ``x`` (float64, as ``Ch.__new__`` stores it)."""

    def __init__(self, x):
        self.__dict__.update(
            _dirty_vars={"x"},
            _itr=None,
            _parents={},
            _cache={"r": None, "drs": {}},
            _make_dense=False,
            _make_sparse=False,
            _depends_on_deps={},
            x=np.asarray(x, np.float64),
        )

    def __getstate__(self):
        result = dict(self.__dict__)
        del result["_parents"]
        del result["_cache"]
        return result

    @property
    def shape(self):
        return self.x.shape

    def __getitem__(self, key):
        """chumpy's ``Ch.__getitem__``: a Select of the flat indices ``key`` picks."""
        tmp = np.arange(np.prod(self.shape)).reshape(self.shape).__getitem__(key)
        return Select(a=self, idxs=tmp.ravel(), preferred_shape=tmp.shape)


class Select(Ch):
    """chumpy.reordering.Select: terms ``idxs``, ``preferred_shape``; dterm ``a``."""

    def __init__(self, a, idxs, preferred_shape):
        self.__dict__.update(
            _dirty_vars={"a", "idxs", "preferred_shape"},
            _itr=None,
            _parents={},
            _cache={"r": None, "drs": {}},
            _make_dense=False,
            _make_sparse=False,
            _depends_on_deps={},
            a=a,
            idxs=idxs,
            preferred_shape=preferred_shape,
        )


class ChumpyAdd(Ch):
    """chumpy.ch_ops.add: a node handfit must refuse (it is not an array)."""

    def __init__(self, a, b):
        super().__init__(0.0)
        del self.__dict__["x"]
        self.__dict__.update(a=a, b=b)


class CscMatrix:
    """scipy 0.x's csc_matrix as it pickled (``format``, ``_shape``, ``maxprint``, arrays)."""

    def __init__(self, data, indices, indptr, shape):
        self.__dict__.update(
            format="csc",
            _shape=tuple(shape),
            maxprint=50,
            indices=np.asarray(indices, np.int32),
            indptr=np.asarray(indptr, np.int32),
            data=np.asarray(data, np.float64),
        )

    @classmethod
    def from_dense(cls, dense):
        import scipy.sparse

        m = scipy.sparse.csc_matrix(np.asarray(dense, np.float64))
        return cls(m.data, m.indices, m.indptr, m.shape)


class CooMatrix:
    """scipy 0.x's coo_matrix as it pickled."""

    def __init__(self, data, row, col, shape):
        self.__dict__.update(
            format="coo",
            _shape=tuple(shape),
            maxprint=50,
            row=np.asarray(row, np.int32),
            col=np.asarray(col, np.int32),
            data=np.asarray(data, np.float64),
        )


_NAMES = {
    Ch: ("chumpy.ch", "Ch"),
    Select: ("chumpy.reordering", "Select"),
    ChumpyAdd: ("chumpy.ch_ops", "add"),
    CscMatrix: ("scipy.sparse.csc", "csc_matrix"),
    CooMatrix: ("scipy.sparse.coo", "coo_matrix"),
}
for _cls, (_module, _name) in _NAMES.items():
    _cls.__module__, _cls.__qualname__ = _module, _name


def register_chumpy(monkeypatch) -> None:
    """Registers the chumpy stand-ins under chumpy's module names (for the test's duration)."""
    package = types.ModuleType("chumpy")
    for module_name, classes in {
        "chumpy.ch": {"Ch": Ch},
        "chumpy.reordering": {"Select": Select},
        "chumpy.ch_ops": {"add": ChumpyAdd},
    }.items():
        module = types.ModuleType(module_name)
        for name, cls in classes.items():
            setattr(module, name, cls)
        setattr(package, module_name.split(".")[1], module)
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setitem(sys.modules, "chumpy", package)
