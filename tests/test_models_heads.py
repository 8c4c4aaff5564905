"""Tests of the dense heads f_M (Eq. 5) and f_R (Eq. 6)."""

import jax
import jax.numpy as jnp
import numpy as np

from handfit import mano, params
from handfit.models import heads

B, D = 2, 16


def _inputs(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    features = jax.nn.relu(jax.random.normal(k1, (B, D)))
    joints2d = jax.random.uniform(k2, (B, 21, 2), minval=0.0, maxval=224.0)
    return features, joints2d


def test_layer_sizes_match_the_paper():
    f = jnp.zeros((1, 2048))
    j2d, p, j3d = jnp.zeros((1, 21, 2)), jnp.zeros((1, 63)), jnp.zeros((1, 21, 3))
    key = jax.random.PRNGKey(0)
    vm = jax.eval_shape(heads.MeshRegressor().init, key, f, j2d, p)
    vr = jax.eval_shape(heads.PoseRefiner().init, key, p, f, j3d, j2d)
    assert vm["params"]["dense"]["kernel"].shape == (2153, 63)
    assert vr["params"]["dense"]["kernel"].shape == (2216, 42)


def test_mesh_regressor_iterations_start_near_p0_and_are_differentiable():
    model = mano.open_hand()
    p0 = params.MeshParams.initial(B, model).to_vector()
    features, joints2d = _inputs()
    f_m = heads.MeshRegressor()
    variables = f_m.init(jax.random.PRNGKey(0), features, joints2d, p0)

    def run(variables, features):
        p = p0
        for _ in range(3):
            p = f_m.apply(variables, features, joints2d, p)
        return p

    p3 = run(variables, features)
    assert p3.shape == (B, 63)
    assert 0 < np.abs(p3 - p0).max() < 2e-2
    # the mean pose is kept: p(0) has a non-zero pose
    np.testing.assert_allclose(p3[:, :45], p0[:, :45], atol=2e-2)
    assert np.abs(p0[:, :45]).max() > 0.1

    loss = lambda v, f: jnp.sum(run(v, f) ** 2)  # noqa: E731
    gv, gf = jax.grad(loss, argnums=(0, 1))(variables, features)
    assert np.all(np.isfinite(gv["params"]["dense"]["kernel"]))
    assert np.abs(gv["params"]["dense"]["kernel"]).max() > 0
    assert np.abs(gf).max() > 0  # the backbone would get a gradient


def test_mesh_regressor_6d_updates_the_rotation_through_its_6d_code():
    model = mano.open_hand()
    p0 = params.MeshParams.initial(B, model).to_vector()
    features, joints2d = _inputs(2)
    f_m = heads.MeshRegressor(rotation_form="6d")
    variables = f_m.init(jax.random.PRNGKey(0), features, joints2d, p0)
    assert variables["params"]["dense"]["kernel"].shape == (D + 42 + 65, 65)
    p1 = f_m.apply(variables, features, joints2d, p0)
    assert p1.shape == (B, 63)
    assert 0 < np.abs(p1 - p0).max() < 2e-2
    # An output of 1 on the first column's y entry turns the hand 45 deg about z.
    kernel = variables["params"]["dense"]["kernel"]
    bias = jnp.zeros(65).at[55 + 1].set(1.0)
    turned = {"params": {"dense": {"kernel": jnp.zeros_like(kernel), "bias": bias}}}
    rot = params.rotation(params.MeshParams.from_vector(f_m.apply(turned, features, joints2d, p0)))
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(rot[0], [[c, -c, 0], [c, c, 0], [0, 0, 1]], atol=1e-6)

    def loss(v):  # a point turned by the rotation f_M returns
        p1 = params.MeshParams.from_vector(f_m.apply(v, features, joints2d, p0))
        return jnp.sum(params.rotation(p1) @ jnp.array([0.3, -0.5, 0.8]))

    grad = jax.grad(loss)(variables)["params"]["dense"]["kernel"]
    assert np.all(np.isfinite(grad)) and np.abs(grad[:, 55:61]).max() > 0


def test_mesh_regressor_is_invariant_to_crop_resolution():
    """The same joints in a 2x larger crop give the same step (inputs are normalised)."""
    features, joints2d = _inputs(1)
    p = jnp.zeros((B, 63))
    small, big = heads.MeshRegressor(crop_size=224.0), heads.MeshRegressor(crop_size=448.0)
    v = small.init(jax.random.PRNGKey(0), features, joints2d, p)
    np.testing.assert_allclose(
        small.apply(v, features, joints2d, p), big.apply(v, features, 2 * joints2d, p), atol=1e-6
    )


def test_pose_refiner_starts_at_its_input_and_is_identity_with_zero_kernel():
    features, joints2d = _inputs(2)
    p, j3d = jnp.zeros((B, 63)), jnp.zeros((B, 21, 3)).at[..., 2].set(0.5)
    f_r = heads.PoseRefiner()
    v = f_r.init(jax.random.PRNGKey(0), p, features, j3d, joints2d)
    out = f_r.apply(v, p, features, j3d, joints2d)
    assert out.shape == (B, 21, 2)
    assert 0 < np.abs(out - joints2d).max() < 1.0  # pixels
    zero = jax.tree_util.tree_map(jnp.zeros_like, v)
    np.testing.assert_allclose(f_r.apply(zero, p, features, j3d, joints2d), joints2d, atol=1e-4)
    g = jax.grad(lambda j: jnp.sum(f_r.apply(v, p, features, j3d, j)))(joints2d)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_documented_loop_with_the_hand_model():
    """The loop of the heads module's docstring, under jit: shapes and finiteness."""
    model = mano.open_hand()
    features, j2d0 = _inputs(3)
    p0 = params.MeshParams.initial(B, model).to_vector()
    j3d0 = params.mesh(params.MeshParams.from_vector(p0), model).joints
    f_m, f_r = heads.MeshRegressor(), heads.PoseRefiner()
    vm = f_m.init(jax.random.PRNGKey(0), features, j2d0, p0)
    vr = f_r.init(jax.random.PRNGKey(1), p0, features, j3d0, j2d0)

    @jax.jit
    def loop(vm, vr, features, j2d):
        p, outs = p0, []
        for _ in range(3):
            joints3d = params.mesh(params.MeshParams.from_vector(p), model).joints
            p, j2d = f_m.apply(vm, features, j2d, p), f_r.apply(vr, p, features, joints3d, j2d)
            outs.append((p, j2d))
        return outs

    outs = loop(vm, vr, features, j2d0)
    assert len(outs) == 3
    for p, j2d in outs:
        assert p.shape == (B, 63) and j2d.shape == (B, 21, 2)
        assert np.all(np.isfinite(p)) and np.all(np.isfinite(j2d))


def test_mesh_regressor_feature_width_reads_f_through_a_normalised_projection():
    """feature_width=k: the head sees k normalised numbers for f, whatever f's size and scale."""
    features, joints2d = _inputs(3)
    p = params.MeshParams.initial(B, mano.open_hand()).to_vector()
    f_m = heads.MeshRegressor(feature_width=8, hidden=(32,))
    v = f_m.init(jax.random.PRNGKey(0), features, joints2d, p)
    assert v["params"]["feature_proj"]["kernel"].shape == (D, 8)
    assert v["params"]["hidden0"]["kernel"].shape == (8 + 42 + 63, 32)
    # With the projection's bias at 0 (its initial value) f and 10 f give the same step...
    np.testing.assert_allclose(
        f_m.apply(v, features, joints2d, p), f_m.apply(v, 10 * features, joints2d, p), atol=1e-5
    )
    # ...and f still moves it, and gets a gradient for the backbone.
    step = lambda f: jnp.sum(f_m.apply(v, f, joints2d, p) ** 2)  # noqa: E731
    swapped = f_m.apply(v, features[::-1], joints2d, p)
    assert np.abs(swapped - f_m.apply(v, features, joints2d, p)).max() > 0
    assert np.abs(jax.grad(step)(features)).max() > 0
