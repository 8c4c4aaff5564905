"""handfit.mano: forward kinematics against a NumPy reference, invariances, loading."""

import dataclasses
import os
import pickle
import sys

import fixtures_pickle as fp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from scipy.spatial.transform import Rotation

from handfit import mano, safe_pickle, skeleton


def random_model(seed=0, n_verts=40, n_betas=10) -> mano.HandModel:
    """A small MANO-format model with random blend shapes (exercises every term)."""
    rng = np.random.default_rng(seed)
    weights = rng.random((n_verts, 16)) ** 4
    weights /= weights.sum(1, keepdims=True)
    reg = rng.random((16, n_verts))
    return mano.HandModel(
        v_template=rng.normal(0, 0.05, (n_verts, 3)).astype(np.float32),
        shapedirs=rng.normal(0, 0.01, (n_verts, 3, n_betas)).astype(np.float32),
        posedirs=rng.normal(0, 0.01, (n_verts, 3, 135)).astype(np.float32),
        j_regressor=(reg / reg.sum(1, keepdims=True)).astype(np.float32),
        weights=weights.astype(np.float32),
        faces=rng.integers(0, n_verts, (30, 3)).astype(np.int32),
        hands_components=np.linalg.qr(rng.normal(size=(45, 45)))[0].T.astype(np.float32),
        hands_mean=rng.normal(0, 0.2, 45).astype(np.float32),
        fingertip_ids=(1, 5, 9, 13, 17),
        name="random test model",
    )


def reference_forward(model, pose, shape, global_rot):
    """MANO in plain NumPy, one joint at a time with 4x4 matrices (float64)."""
    m = {
        k: np.asarray(getattr(model, k), np.float64)
        for k in ("v_template", "shapedirs", "posedirs", "j_regressor", "weights")
    }
    full = np.concatenate([global_rot, pose]).reshape(16, 3)
    rots = Rotation.from_rotvec(full).as_matrix()
    v_shaped = m["v_template"] + m["shapedirs"][..., : len(shape)] @ shape
    joints = m["j_regressor"] @ v_shaped
    feature = (rots[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + m["posedirs"] @ feature
    world = []
    for j, parent in enumerate(model.parents):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parent] if parent >= 0 else 0)
        world.append(local if parent < 0 else world[parent] @ local)
    skin = []
    for j in range(16):
        t = world[j].copy()
        t[:3, 3] -= world[j][:3, :3] @ joints[j]
        skin.append(t)
    blend = np.einsum("vj,jab->vab", m["weights"], np.stack(skin))
    homo = np.concatenate([v_posed, np.ones((len(v_posed), 1))], 1)
    verts = np.einsum("vab,vb->va", blend, homo)[:, :3]
    posed_joints = np.stack([w[:3, 3] for w in world])
    all21 = np.concatenate([posed_joints, verts[list(model.fingertip_ids)]])
    return verts, all21[list(skeleton.MANO_TO_CANONICAL)]


def test_matches_numpy_reference_in_float64():
    model = random_model()
    rng = np.random.default_rng(1)
    pose, shape, rot = rng.normal(0, 0.6, 45), rng.normal(0, 1, 10), rng.normal(0, 0.8, 3)
    want_v, want_j = reference_forward(model, pose, shape, rot)
    with jax.enable_x64(True):
        out = mano.forward(
            model.astype(np.float64),
            jnp.asarray(pose[None]),
            jnp.asarray(shape[None]),
            jnp.asarray(rot[None]),
        )
        np.testing.assert_allclose(out.vertices[0], want_v, atol=1e-10)
        np.testing.assert_allclose(out.joints[0], want_j, atol=1e-10)


def test_float32_close_to_reference_and_batched():
    model = random_model(2)
    rng = np.random.default_rng(3)
    pose, shape, rot = (
        rng.normal(0, 0.6, (4, 45)),
        rng.normal(0, 1, (4, 10)),
        rng.normal(0, 1, (4, 3)),
    )
    out = jax.jit(mano.forward)(
        model,
        jnp.asarray(pose, jnp.float32),
        jnp.asarray(shape, jnp.float32),
        jnp.asarray(rot, jnp.float32),
    )
    assert out.vertices.dtype == jnp.float32
    for b in range(4):
        want_v, want_j = reference_forward(model, pose[b], shape[b], rot[b])
        np.testing.assert_allclose(out.vertices[b], want_v, atol=2e-5)
        np.testing.assert_allclose(out.joints[b], want_j, atol=2e-5)


def test_zero_pose_and_shape_give_the_template_and_regressed_joints():
    model = mano.open_hand()
    out = mano.forward(model, jnp.zeros((1, 45)), jnp.zeros((1, 10)))
    np.testing.assert_allclose(out.vertices[0], model.v_template, atol=1e-6)
    regressed = np.asarray(model.j_regressor) @ np.asarray(model.v_template)
    mano_order = np.argsort(skeleton.MANO_TO_CANONICAL)
    np.testing.assert_allclose(np.asarray(out.joints[0])[mano_order][:16], regressed, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(out.joints[0])[list(skeleton.FINGERTIPS)],
        np.asarray(model.v_template)[list(model.fingertip_ids)],
        atol=1e-6,
    )


def test_global_rotation_rotates_the_output_about_the_wrist():
    model = mano.open_hand()
    rng = np.random.default_rng(4)
    pose = jnp.asarray(rng.normal(0, 0.3, (1, 45)), jnp.float32)
    shape = jnp.asarray(rng.normal(0, 1, (1, 10)), jnp.float32)
    rot = np.array([0.3, -1.1, 0.7])
    base = mano.forward(model, pose, shape)
    turned = mano.forward(model, pose, shape, jnp.asarray(rot[None], jnp.float32))
    r = Rotation.from_rotvec(rot).as_matrix()
    wrist = np.asarray(base.joints[0, 0])
    np.testing.assert_allclose(
        turned.vertices[0], (base.vertices[0] - wrist) @ r.T + wrist, atol=1e-5
    )
    np.testing.assert_allclose(turned.joints[0], (base.joints[0] - wrist) @ r.T + wrist, atol=1e-5)


def test_one_finger_joint_moves_only_the_vertices_it_skins():
    model = mano.open_hand()
    joint = 2  # index PIP (MANO order); it also carries the DIP (3) with it
    pose = np.zeros((1, 45), np.float32)
    pose[0, 3 * (joint - 1) : 3 * joint] = [0.9, 0.1, 0.0]
    out = mano.forward(model, jnp.asarray(pose), jnp.zeros((1, 10)))
    moved = np.linalg.norm(np.asarray(out.vertices[0]) - model.v_template, axis=-1) > 1e-7
    skinned = np.asarray(model.weights)[:, [2, 3]].sum(1) > 0
    assert moved.any()
    assert not (moved & ~skinned).any(), "a vertex not skinned to the index PIP/DIP moved"
    # the joints of other fingers stay put
    others = [j for j in range(21) if j not in (6, 7, 8)]
    np.testing.assert_allclose(
        np.asarray(out.joints[0])[others],
        np.asarray(mano.forward(model, jnp.zeros((1, 45)), jnp.zeros((1, 10))).joints[0])[others],
        atol=1e-7,
    )


def test_gradients_at_zero_pose_are_finite_and_match_finite_differences():
    model = mano.open_hand().astype(np.float64)
    rng = np.random.default_rng(5)
    target = rng.normal(0, 0.1, (1, 21, 3))
    with jax.enable_x64(True):

        def loss(pose, shape, rot):
            out = mano.forward(model, pose, shape, rot)
            return jnp.sum((out.joints - target) ** 2) + jnp.sum(out.vertices**2)

        args = (jnp.zeros((1, 45)), jnp.zeros((1, 10)), jnp.zeros((1, 3)))
        grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
        for g in grads:
            assert np.all(np.isfinite(g))
        eps = 1e-6
        for argnum, index in [(0, 4), (0, 40), (1, 0), (1, 7), (2, 1)]:
            bump = [np.array(a) for a in args]
            bump[argnum][0, index] += eps
            up = loss(*map(jnp.asarray, bump))
            bump[argnum][0, index] -= 2 * eps
            down = loss(*map(jnp.asarray, bump))
            np.testing.assert_allclose(
                grads[argnum][0, index], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8
            )


def test_pca_with_all_components_equals_full_pose():
    model = mano.open_hand()
    rng = np.random.default_rng(6)
    pose = rng.normal(0, 0.4, (2, 45)).astype(np.float32)
    coeffs = pose @ np.asarray(model.hands_components).T  # orthonormal rows
    full = mano.forward(model, jnp.asarray(pose), jnp.zeros((2, 10)), flat_hand_mean=False)
    pca = mano.forward(
        model, jnp.asarray(coeffs), jnp.zeros((2, 10)), use_pca=True, flat_hand_mean=False
    )
    np.testing.assert_allclose(pca.vertices, full.vertices, atol=1e-5)
    few = mano.forward(model, jnp.asarray(coeffs[:, :6]), jnp.zeros((2, 10)), use_pca=True)
    assert few.vertices.shape == full.vertices.shape
    assert not np.allclose(few.vertices, full.vertices, atol=1e-3)


def test_flat_hand_mean_false_adds_the_mean_pose():
    model = mano.open_hand()
    with_mean = mano.forward(model, jnp.zeros((1, 45)), jnp.zeros((1, 10)), flat_hand_mean=False)
    explicit = mano.forward(model, jnp.asarray(model.hands_mean)[None], jnp.zeros((1, 10)))
    np.testing.assert_allclose(with_mean.vertices, explicit.vertices, atol=1e-6)


def test_mirror_gives_the_mirrored_mesh():
    model = random_model(7)
    left = mano.mirror(model)
    rng = np.random.default_rng(8)
    pose, shape, rot = (
        rng.normal(0, 0.5, (1, 45)),
        rng.normal(0, 1, (1, 10)),
        rng.normal(0, 1, (1, 3)),
    )
    flip = np.tile([1.0, -1.0, -1.0], 15)
    right = mano.forward(model, *map(lambda a: jnp.asarray(a, jnp.float32), (pose, shape, rot)))
    mirrored = mano.forward(
        left,
        jnp.asarray(pose * flip, jnp.float32),
        jnp.asarray(shape, jnp.float32),
        jnp.asarray(rot * [1.0, -1.0, -1.0], jnp.float32),
    )
    x = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored.vertices[0], np.asarray(right.vertices[0]) * x, atol=1e-5)
    np.testing.assert_allclose(mirrored.joints[0], np.asarray(right.joints[0]) * x, atol=1e-5)
    assert left.side == "left"
    back = mano.mirror(left)
    for field in ("v_template", "shapedirs", "posedirs", "faces", "hands_mean"):
        np.testing.assert_array_equal(getattr(back, field), getattr(model, field))


def test_open_left_hand_is_a_closed_mirrored_surface():
    import trimesh

    left = mano.open_hand("left")
    mesh = trimesh.Trimesh(np.asarray(left.v_template), np.asarray(left.faces), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert np.asarray(left.v_template)[:, 0].mean() < 0 < mano.open_hand().v_template[:, 0].mean()


def test_bad_arguments_name_what_was_expected():
    model = mano.open_hand()
    with pytest.raises(ValueError, match=r"pose must be \[B, 45\]"):
        mano.forward(model, jnp.zeros((1, 44)), jnp.zeros((1, 10)))
    with pytest.raises(ValueError, match="at most 45 PCA"):
        mano.forward(model, jnp.zeros((1, 46)), jnp.zeros((1, 10)), use_pca=True)
    with pytest.raises(ValueError, match="shape has 11 coefficients"):
        mano.forward(model, jnp.zeros((1, 45)), jnp.zeros((1, 11)))
    with pytest.raises(ValueError, match="global_rot must be"):
        mano.forward(model, jnp.zeros((2, 45)), jnp.zeros((2, 10)), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="side must be"):
        mano.open_hand("both")


# ---------------------------------------------------------------------------
# Files


def _released_format(model: mano.HandModel, j_regressor=None) -> dict:
    """The model as the released MANO_*.pkl holds it (Python 2, chumpy, scipy 0.x).

    ``shapedirs`` is a chumpy Select of the first S of 2S directions of a Ch (the released
    file selects 10 of 20); v_template, posedirs, weights, hands_components, hands_mean
    are Ch; J_regressor a csc_matrix; f and kintree_table plain uint32 arrays.
    """
    arrays = mano.to_arrays(model)
    kintree = arrays["kintree_table"].astype(np.int64)
    kintree[0, 0] = 4294967295
    n_betas = arrays["shapedirs"].shape[-1]
    extra = np.random.default_rng(0).normal(0, 0.01, arrays["shapedirs"].shape)
    all_dirs = fp.Ch(np.concatenate([arrays["shapedirs"], extra], -1))
    return dict(
        v_template=fp.Ch(arrays["v_template"]),
        shapedirs=all_dirs[:, :, :n_betas],
        posedirs=fp.Ch(arrays["posedirs"]),
        J_regressor=fp.CscMatrix.from_dense(arrays["J_regressor"])
        if j_regressor is None
        else j_regressor,
        weights=fp.Ch(arrays["weights"]),
        kintree_table=kintree.astype(np.uint32),
        f=arrays["f"].astype(np.uint32),
        hands_components=fp.Ch(arrays["hands_components"]),
        hands_mean=fp.Ch(arrays["hands_mean"]),
        hands_coeffs=np.zeros((10, 12)),
        bs_style="lbs",
        bs_type="lrotmin",
    )


def _write_released(path, model, monkeypatch, **kw):
    """Writes ``model`` in the released format, then makes chumpy unimportable again."""
    fp.register_chumpy(monkeypatch)
    path.write_bytes(fp.dumps_py2(_released_format(model, **kw)))
    monkeypatch.undo()  # reading must not need chumpy
    assert "chumpy" not in sys.modules


def test_the_released_pickle_format_loads_as_the_same_arrays_in_npz(tmp_path, monkeypatch):
    """The acceptance test: same vertices from the released-format .pkl and from .npz."""
    model = mano.open_hand()
    pkl, npz = tmp_path / "MANO_RIGHT.pkl", tmp_path / "same.npz"
    _write_released(pkl, model, monkeypatch)
    mano.save_npz(model, npz)
    loaded = mano.load(pkl, fingertip_ids=model.fingertip_ids)
    assert loaded.side == "right" and loaded.name == "MANO_RIGHT.pkl"
    from_npz = mano.load(npz)
    for field in ("v_template", "shapedirs", "posedirs", "j_regressor", "weights", "faces"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(from_npz, field))
    rng = np.random.default_rng(1)
    pose = jnp.asarray(rng.normal(0, 0.5, (2, 45)), jnp.float32)
    shape = jnp.asarray(rng.normal(0, 1.0, (2, 10)), jnp.float32)
    want = mano.forward(from_npz, pose, shape).vertices
    np.testing.assert_array_equal(mano.forward(loaded, pose, shape).vertices, want)


def test_a_chumpy_expression_is_refused_where_it_is_used(tmp_path, monkeypatch):
    """Only Ch and Select are evaluated; another chumpy node in a key that the model uses is
    an error naming the key and the node type (one in an unused key is left alone)."""
    model = mano.open_hand()
    arrays = _released_format(model)
    arrays["J"] = fp.ChumpyAdd(fp.Ch(np.ones(3)), fp.Ch(np.ones(3)))  # not read by handfit
    fp.register_chumpy(monkeypatch)
    ok = fp.dumps_py2(arrays)
    arrays["weights"] = fp.ChumpyAdd(arrays["weights"], fp.Ch(np.zeros(1)))
    refused = fp.dumps_py2(arrays)
    monkeypatch.undo()
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(ok)
    mano.load(tmp_path / "MANO_RIGHT.pkl", fingertip_ids=model.fingertip_ids)
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(refused)
    with pytest.raises(
        ValueError, match=r"MANO_RIGHT.pkl\['weights'\]: chumpy node chumpy.ch_ops.add"
    ):
        mano.load(tmp_path / "MANO_RIGHT.pkl", fingertip_ids=model.fingertip_ids)


def test_a_protocol_0_pickle_of_chumpy_arrays_loads(tmp_path, monkeypatch):
    """Protocols 0 and 1 create objects through copy_reg._reconstructor(cls, object, None)."""
    model = mano.open_hand()
    data = _released_format(model, j_regressor=scipy.sparse.csc_matrix(model.j_regressor))
    fp.register_chumpy(monkeypatch)
    raw = pickle.dumps(data, protocol=0)
    monkeypatch.undo()
    assert b"copy_reg\n_reconstructor" in raw
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(raw)
    loaded = mano.load(tmp_path / "MANO_RIGHT.pkl", fingertip_ids=model.fingertip_ids)
    np.testing.assert_array_equal(loaded.shapedirs, model.shapedirs)
    np.testing.assert_array_equal(loaded.j_regressor, model.j_regressor)


@pytest.mark.parametrize(
    "shape, indices, indptr, message",
    [
        # a 5 KB file whose indices point 10**9 rows down: J_regressor.todense() segfaulted
        (None, 10**9, None, "indices span"),
        (None, 16, None, r"outside \[0, 16\)"),  # one past the 16 rows: wrote outside silently
        ((10**6, 10**6), None, None, "needs 1000001 index pointers"),  # asked for 7 TiB
        ((10**6, 777), 10**6 - 1, None, r"must have shape \[16, 777\]"),
        (None, None, "decreasing", "never decrease"),
    ],
)
def test_crafted_sparse_regressors_are_refused(
    tmp_path, monkeypatch, shape, indices, indptr, message
):
    m = scipy.sparse.csc_matrix(mano.open_hand().j_regressor)
    idx, ptr = m.indices.copy(), m.indptr.copy()
    if indices is not None:
        idx[3] = indices
    if indptr is not None:
        ptr[5] = ptr[6] + 1
    crafted = fp.CscMatrix(m.data, idx, ptr, shape or m.shape)
    path = tmp_path / "MANO_RIGHT.pkl"
    _write_released(path, mano.open_hand(), monkeypatch, j_regressor=crafted)
    with pytest.raises(ValueError, match=f"MANO_RIGHT.pkl.*J_regressor.*{message}"):
        mano.load(path, fingertip_ids=(1, 2, 3, 4, 5))


def test_nan_in_a_model_array_is_an_error_naming_the_key(tmp_path, monkeypatch):
    arrays = mano.to_arrays(mano.open_hand())
    arrays["posedirs"] = arrays["posedirs"].copy()  # not the cached model's own array
    arrays["posedirs"][7, 1, 3] = np.nan
    np.savez(tmp_path / "hand.npz", **arrays)
    with pytest.raises(
        ValueError, match=r"hand.npz: posedirs holds NaN or inf \(first at index \[7, 1, 3\]\)"
    ):
        mano.load(tmp_path / "hand.npz")
    model = mano.open_hand()
    weights = np.array(model.weights)
    weights[2, 0] = np.nan
    path = tmp_path / "MANO_RIGHT.pkl"
    _write_released(path, dataclasses.replace(model, weights=weights), monkeypatch)
    with pytest.raises(ValueError, match="MANO_RIGHT.pkl: weights holds NaN"):
        mano.load(path, fingertip_ids=model.fingertip_ids)


def test_npz_that_is_not_an_archive_or_holds_objects_gets_handfits_error(tmp_path):
    not_zip = tmp_path / "MANO_RIGHT.npz"
    not_zip.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    with pytest.raises(ValueError, match="MANO_RIGHT.npz: not an .npz archive") as info:
        mano.load(not_zip)
    assert "allow_pickle" not in str(info.value)
    arrays = mano.to_arrays(mano.open_hand())
    arrays["hands_mean"] = np.array([{"not": "numbers"}], dtype=object)
    np.savez(tmp_path / "objects.npz", **arrays)
    with pytest.raises(
        ValueError, match=r"objects.npz: array 'hands_mean' holds Python objects"
    ) as info:
        mano.load(tmp_path / "objects.npz")
    assert "allow_pickle" not in str(info.value)


def test_a_pickle_that_calls_a_function_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load global"):
        mano.load(path)
    assert not marker.exists()


def test_npz_round_trip(tmp_path):
    model = mano.open_hand()
    path = tmp_path / "hand.npz"
    mano.save_npz(model, path)
    loaded = mano.load(path)
    for field in dataclasses.fields(mano.HandModel):
        a, b = getattr(loaded, field.name), getattr(model, field.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, field.name


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mano.is.tue.mpg.de"):
        mano.load(tmp_path / "MANO_RIGHT.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="junk.pkl: not a readable pickle"):
        mano.load(tmp_path / "junk.pkl", side="right")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="holds a list, expected a dict"):
        mano.load(tmp_path / "list.pkl", side="right")
    arrays = mano.to_arrays(mano.open_hand())
    del arrays["posedirs"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(
        ValueError, match=r"missing.npz: not a MANO model: missing keys \['posedirs'\]"
    ):
        mano.load(tmp_path / "missing.npz")
    arrays = mano.to_arrays(mano.open_hand())
    arrays["weights"] = arrays["weights"][:, :15]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"weights must have shape \[777, 16\]"):
        mano.load(tmp_path / "bad.npz")


def test_left_shapedirs_fix(tmp_path):
    right = mano.open_hand()
    left = mano.mirror(right)
    defective = dataclasses.replace(left, shapedirs=np.array(left.shapedirs))
    defective.shapedirs[:, 0, :] = right.shapedirs[:, 0, :]  # the official file's defect
    alone = tmp_path / "alone"
    alone.mkdir()
    mano.save_npz(defective, alone / "MANO_LEFT.npz")
    # no right model beside it: 'auto' leaves the file as it is; True fixes it
    np.testing.assert_array_equal(mano.load(alone / "MANO_LEFT.npz").shapedirs, defective.shapedirs)
    np.testing.assert_array_equal(
        mano.load(alone / "MANO_LEFT.npz", fix_left_shapedirs=True).shapedirs, left.shapedirs
    )
    pair = tmp_path / "pair"
    pair.mkdir()
    mano.save_npz(defective, pair / "MANO_LEFT.npz")
    mano.save_npz(right, pair / "MANO_RIGHT.npz")
    np.testing.assert_array_equal(mano.load(pair / "MANO_LEFT.npz").shapedirs, left.shapedirs)
    # a left model that is already correct is left alone
    mano.save_npz(left, pair / "MANO_LEFT.npz")
    np.testing.assert_array_equal(mano.load(pair / "MANO_LEFT.npz").shapedirs, left.shapedirs)
    np.testing.assert_array_equal(
        mano.load(pair / "MANO_LEFT.npz", fix_left_shapedirs=False).shapedirs, left.shapedirs
    )


def test_from_config_loads_the_configured_hand_once_until_its_file_changes(tmp_path):
    import ml_collections

    path = tmp_path / "hand.npz"
    mano.save_npz(random_model(3), path)
    config = ml_collections.ConfigDict({"hand": {"model_path": str(path), "side": "left"}})
    first = mano.from_config(config)
    assert first.side == "left"  # a right-hand file asked for as left is mirrored
    np.testing.assert_array_equal(first.v_template, mano.get_model(str(path), "left").v_template)
    assert mano.from_config(config) is first
    mano.save_npz(random_model(4), path)
    os.utime(path, ns=(0, 0))  # another file: its modification time differs
    changed = mano.from_config(config)
    assert changed is not first
    np.testing.assert_array_equal(changed.v_template, mano.get_model(str(path), "left").v_template)
    open_right = mano.from_config(
        ml_collections.ConfigDict({"hand": {"model_path": "", "side": "right"}})
    )
    assert open_right is mano.open_hand("right")
