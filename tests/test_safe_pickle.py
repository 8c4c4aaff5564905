"""handfit.safe_pickle: chumpy's Ch and Select evaluated as chumpy does; crafted pickles refused.

Pickles are written as Python 2 wrote the released MANO files (tests/fixtures_pickle.py).
"""

import pickle
import pickletools

import fixtures_pickle as fp
import numpy as np
import pytest

from handfit import safe_pickle


def _load(obj, where="model.pkl"):
    return safe_pickle.loads(fp.dumps_py2(obj), where)


@pytest.mark.parametrize(
    "key",
    [
        (slice(None), slice(None), slice(0, 3)),  # the released shapedirs: [..., :10] of 20
        (slice(None, None, -1), [0, 2], 1),
        (np.array([[1, 0], [0, 1]]), Ellipsis),
    ],
)
def test_select_over_ch_is_numpy_indexing(key):
    """chumpy's ``Ch.__getitem__`` builds a Select whose value is ``a[key]`` (as float64)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3, 5)).astype(np.float32)
    got = _load({"shapedirs": fp.Ch(a)[key]})["shapedirs"]
    want = np.atleast_1d(a.astype(np.float64)[key])
    assert got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def test_nested_select_and_select_over_a_plain_array():
    a = np.arange(60.0).reshape(3, 4, 5)
    inner = fp.Ch(a)[1:, :, ::2]  # [2, 4, 3]
    outer = fp.Select(a=inner, idxs=np.array([5, 0, 23]), preferred_shape=(3, 1))
    plain = fp.Select(a=a, idxs=np.array([59, 0]), preferred_shape=(2,))
    out = _load({"outer": outer, "plain": plain, "scalar": fp.Ch(2.5)})
    np.testing.assert_array_equal(out["outer"], a[1:, :, ::2].ravel()[[5, 0, 23]].reshape(3, 1))
    np.testing.assert_array_equal(out["plain"], [59.0, 0.0])
    np.testing.assert_array_equal(out["scalar"], [2.5])  # chumpy's r is at least 1-D


def test_other_chumpy_nodes_are_refused_naming_key_and_type():
    """Refused when used as an array: a key nobody reads does not stop the file loading."""
    add = fp.ChumpyAdd(fp.Ch(np.ones(3)), fp.Ch(np.ones(3)))
    over_add = fp.Select(a=add, idxs=np.array([0]), preferred_shape=(1,))
    bad_idxs = fp.Select(a=fp.Ch(np.ones(3)), idxs=np.array([3]), preferred_shape=(1,))
    out = _load({"posedirs": add, "shapedirs": over_add, "J": bad_idxs, "f": np.ones(2)})
    np.testing.assert_array_equal(out["f"], [1.0, 1.0])
    for key, message in [
        ("posedirs", r"\['posedirs'\]: chumpy node chumpy\.ch_ops\.add cannot be evaluated"),
        ("shapedirs", r"\['shapedirs'\]: chumpy node chumpy\.ch_ops\.add"),
        ("J", r"\['J'\]: chumpy\.reordering\.Select cannot be evaluated"),
    ]:
        with pytest.raises(safe_pickle.UnsafePickleError, match=message):
            np.asarray(out[key], np.float32)


def test_the_fixture_writes_python_2_opcodes():
    """The fixture's bytes are what Python 2 wrote: byte strings, NEWOBJ for chumpy, numpy 1.x."""
    data = fp.dumps_py2({"shapedirs": fp.Ch(np.zeros((2, 3, 4)))[:, :, :2], "f": np.ones(3)})
    ops = list(pickletools.genops(data))
    names = [op.name for op, _, _ in ops]
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    assert not {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE"} & set(names)
    globals_ = [arg for op, arg, _ in ops if op.name == "GLOBAL"]
    assert set(globals_) == {
        "chumpy.reordering Select",
        "chumpy.ch Ch",
        "numpy.core.multiarray _reconstruct",
        "numpy ndarray",
        "numpy dtype",
        "__builtin__ set",
    }
    for i, (op, arg, _) in enumerate(ops):  # object.__reduce_ex__(2): class, (), NEWOBJ, BUILD
        if op.name == "GLOBAL" and arg.startswith("chumpy"):
            assert [o.name for o, _, _ in ops[i + 1 : i + 5]] == [
                "BINPUT",
                "EMPTY_TUPLE",
                "NEWOBJ",
                "BINPUT",
            ]
    keys = [arg for op, arg, _ in ops if op.name == "SHORT_BINSTRING"]
    assert {"shapedirs", "a", "idxs", "preferred_shape", "x", "_dirty_vars"} <= set(keys)


def _csc_state(**changes):
    state = dict(data=[1.0, 2.0], indices=[0, 2], indptr=[0, 1, 2], shape=(3, 2))
    state.update(changes)
    return fp.CscMatrix(**state)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (_csc_state(indices=[0, 10**9]), r"indices span \[0, 1000000000\], outside \[0, 3\)"),
        (_csc_state(indices=[0, 3]), r"outside \[0, 3\)"),  # one past the end
        (_csc_state(indices=[-1, 0]), r"outside \[0, 3\)"),
        (_csc_state(shape=(10**6, 10**6)), "needs 1000001 index pointers"),
        (_csc_state(indptr=[0, 2, 1]), "never decrease"),
        (_csc_state(indptr=[0, 1, 3]), "end at 3 but it holds 2 indices"),
        (fp.CooMatrix([1.0], [3], [0], (3, 2)), r"'row' indices span \[3, 3\]"),
    ],
)
def test_invalid_sparse_matrices_are_refused_naming_file_and_key(matrix, message):
    with pytest.raises(
        safe_pickle.UnsafePickleError, match=r"anno\.pickle\[0\]\['K'\]: .*" + message
    ):
        _load({0: {"K": matrix}}, "anno.pickle")


def test_valid_sparse_matrices_are_rebuilt():
    dense = np.array([[0.0, 1.5], [0.0, 0.0], [2.0, 3.0]])
    out = _load(
        {"csc": fp.CscMatrix.from_dense(dense), "coo": fp.CooMatrix([4.0], [2], [1], (3, 2))}
    )
    np.testing.assert_array_equal(out["csc"].toarray(), dense)
    np.testing.assert_array_equal(out["coo"].toarray(), [[0.0, 0.0], [0.0, 0.0], [0.0, 4.0]])


class _Call:
    """Pickles as a call of ``func`` with ``args`` (what an attacker writes)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "payload",
    [
        # numpy allocates any shape it is asked for (uninitialised: 10**5 x 10**5 succeeds)
        _Call(fp.NUMPY_NDARRAY, ((2, 2),)),
        _Call(fp.NUMPY_RECONSTRUCT, (fp.NUMPY_NDARRAY, (2, 2), b"f")),
        _Call(fp.Global("copy_reg", "_reconstructor"), (fp.NUMPY_NDARRAY, fp.NUMPY_NDARRAY, (9,))),
        _Call(fp.Global("_codecs", "encode"), ("text", "rot13")),
        _Call(fp.Ch, (1.0,)),  # a chumpy class called with arguments
    ],
)
def test_allowed_names_cannot_be_called_to_allocate_or_compute(payload):
    with pytest.raises(pickle.UnpicklingError, match="m.pkl"):
        _load({"v_template": payload}, "m.pkl")
