"""handfit.params: the 63 numbers, their neutral value and the mesh they place."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handfit import geometry, mano, params, skeleton


def test_vector_round_trip_and_order():
    v = jnp.arange(2 * 63, dtype=jnp.float32).reshape(2, 63)
    p = params.MeshParams.from_vector(v)
    assert [x.shape[-1] for x in p] == [45, 10, 4, 1, 3]
    assert float(p.shape[0, 0]) == 45 and float(p.trans[0, -1]) == 62
    np.testing.assert_array_equal(p.to_vector(), v)
    with pytest.raises(ValueError, match=r"expected \[..., 63\]"):
        params.MeshParams.from_vector(jnp.zeros((1, 62)))


def test_zeros_is_the_flat_hand_with_its_middle_mcp_at_the_base_translation():
    model = mano.open_hand()
    out = params.mesh(params.MeshParams.zeros(1), model)
    rest = mano.forward(model, jnp.zeros((1, 45)), jnp.zeros((1, 10)))
    np.testing.assert_allclose(
        out.joints[0, skeleton.MIDDLE_MCP], params.BASE_TRANSLATION, atol=1e-6
    )
    offset = np.asarray(params.BASE_TRANSLATION) - np.asarray(rest.joints[0, skeleton.MIDDLE_MCP])
    np.testing.assert_allclose(out.vertices[0], np.asarray(rest.vertices[0]) + offset, atol=1e-6)
    assert np.all(np.asarray(out.vertices)[..., 2] > 0.3), "the neutral hand must be in front"


def test_rotation_scale_and_translation_act_about_the_middle_mcp():
    model = mano.open_hand()
    rng = np.random.default_rng(0)
    base = params.MeshParams.initial(1, model)
    rot = Rotation.from_rotvec([0.2, 0.9, -0.4])
    q = geometry.matrix_to_quaternion(jnp.asarray(rot.as_matrix(), jnp.float32))
    moved = base._replace(
        quat=(q - jnp.array([1.0, 0, 0, 0]))[None],
        scale=jnp.log(jnp.array([[1.3]])),
        trans=jnp.asarray(rng.normal(0, 0.05, (1, 3)), jnp.float32),
    )
    a = params.mesh(base, model)
    b = params.mesh(moved, model)
    root = np.asarray(params.BASE_TRANSLATION)
    want = 1.3 * (np.asarray(a.vertices[0]) - root) @ rot.as_matrix().T + root + moved.trans[0]
    np.testing.assert_allclose(b.vertices[0], want, atol=1e-5)


def test_gradients_reach_all_63_numbers():
    model = mano.open_hand()
    p = params.MeshParams.initial(2, model)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(2, 21, 3)), jnp.float32)

    def loss(v):
        return jnp.sum(params.mesh(params.MeshParams.from_vector(v), model).joints * weights)

    g = np.abs(np.asarray(jax.grad(loss)(p.to_vector()))).sum(0)
    assert np.all(np.isfinite(g))
    # all but the quaternion's w, whose change at the identity only rescales q
    assert list(np.flatnonzero(g == 0)) == [55]
