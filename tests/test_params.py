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


def test_encode_is_the_inverse_of_the_placement_mesh_applies():
    """encode(R, s, position) -> params.mesh puts the model-frame hand, turned by R and
    scaled by s about its middle MCP, with that MCP at ``position``, from any base point."""
    model = mano.open_hand()
    rng = np.random.default_rng(2)
    rot = jnp.asarray(Rotation.random(3, random_state=3).as_matrix(), jnp.float32)
    scale = jnp.asarray([0.8, 1.0, 1.25], jnp.float32)
    position = jnp.asarray(rng.normal([0, 0, 0.6], 0.1, (3, 3)), jnp.float32)
    base = jnp.asarray(rng.normal([0, 0, 0.5], 0.1, (3, 3)), jnp.float32)
    mean = params.MeshParams.initial(3, model)
    p = params.encode(
        pose=mean.pose,
        shape=mean.shape,
        rotation=rot,
        scale=scale,
        position=position,
        base_translation=base,
    )
    np.testing.assert_allclose(params.rotation(p), rot, atol=1e-5)
    np.testing.assert_allclose(params.metric_scale(p), scale, rtol=1e-6)
    np.testing.assert_allclose(params.root_position(p, base), position, atol=1e-6)
    out = params.mesh(p, model, base_translation=base)
    np.testing.assert_allclose(out.joints[:, skeleton.MIDDLE_MCP], position, atol=1e-6)
    frame = mano.forward(model, mean.pose, mean.shape)
    np.testing.assert_array_equal(out.model_frame.vertices, frame.vertices)
    local = np.asarray(frame.vertices) - np.asarray(frame.joints)[:, skeleton.MIDDLE_MCP, None]
    want = np.asarray(scale)[:, None, None] * local @ np.swapaxes(np.asarray(rot), 1, 2)
    np.testing.assert_allclose(out.vertices, want + np.asarray(position)[:, None], atol=1e-5)
    # the neutral placement encodes to zeros
    neutral = params.encode(
        pose=mean.pose,
        shape=mean.shape,
        rotation=jnp.broadcast_to(jnp.eye(3), (3, 3, 3)),
        scale=jnp.ones(3),
        position=jnp.broadcast_to(jnp.asarray(params.BASE_TRANSLATION), (3, 3)),
    )
    np.testing.assert_array_equal(neutral.to_vector()[:, 45:], 0.0)


@pytest.mark.parametrize("crop_scale", [1.5, 2.0])
def test_crop_base_point_is_on_the_crop_centre_at_the_nominal_hand_depth(crop_scale):
    """The base point projects onto the crop's centre, at the depth where a hand of
    NOMINAL_EXTENT spans 1 / crop_scale of the crop (off-centre principal points too)."""
    size = 32.0
    K = np.array(
        [[[60.0, 0, 14], [0, 61, 18], [0, 0, 1]], [[90.0, 0, 16], [0, 90, 16], [0, 0, 1]]],
        np.float32,
    )
    base = np.asarray(params.crop_base_translation(jnp.asarray(K), size, crop_scale))
    uvw = np.einsum("bij,bj->bi", K, base)
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], size / 2, atol=1e-4)
    span = K[:, 0, 0] * params.NOMINAL_EXTENT / base[:, 2]
    np.testing.assert_allclose(span, size / crop_scale, rtol=1e-5)


@pytest.mark.parametrize("form, size", [("quaternion", 63), ("6d", 65)])
def test_regression_vector_round_trips_and_zeros_mean_no_rotation(form, size):
    quat = jax.random.normal(jax.random.PRNGKey(2), (5, 4))
    p = params.MeshParams.zeros(5)._replace(quat=quat, scale=jnp.full((5, 1), 0.3))
    code = params.regression_vector(p, form)
    assert code.shape == (5, size)
    back = params.from_regression_vector(code, form)
    np.testing.assert_allclose(params.rotation(back), params.rotation(p), atol=1e-5)
    np.testing.assert_array_equal(back.pose, p.pose)
    np.testing.assert_array_equal(back.scale, p.scale)
    zero = params.from_regression_vector(jnp.zeros((1, size)), form)
    np.testing.assert_allclose(params.rotation(zero)[0], np.eye(3), atol=1e-6)


def test_the_6d_code_is_continuous_where_the_quaternion_jumps():
    """Turning a hand through 180 deg in the image plane: the quaternion's code flips sign
    (q and -q are one rotation), the 6D code moves as little as the rotation does."""
    angles = np.linspace(np.pi - 0.2, np.pi + 0.2, 41)
    rot = jnp.asarray(Rotation.from_euler("z", angles[:, None]).as_matrix(), jnp.float32)
    p = params.MeshParams.zeros(41)._replace(quat=params.encode_rotation(rot))
    steps = {
        form: np.abs(np.diff(params.regression_vector(p, form), axis=0)).max()
        for form in params.ROTATION_FORMS
    }
    assert steps["6d"] < 0.02  # 0.01 rad per step
    assert steps["quaternion"] > 1.0
    with pytest.raises(ValueError, match="rotation_form='euler'"):
        params.regression_vector(p, "euler")
    with pytest.raises(ValueError, match=r"expected \[..., 65\] for '6d'"):
        params.from_regression_vector(jnp.zeros((1, 63)), "6d")
