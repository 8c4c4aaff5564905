"""handfit.geometry against SciPy's rotations, and the tight box of chosen points."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from handfit import geometry


def test_axis_angle_to_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    r = rng.normal(0, 1.5, (50, 3))
    r[0] = 0.0
    r[1] = [1e-5, -2e-5, 0.0]
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            geometry.axis_angle_to_matrix(jnp.asarray(r)),
            Rotation.from_rotvec(r).as_matrix(),
            atol=1e-12,
        )


def test_axis_angle_gradient_at_zero_is_finite_and_exact():
    # d R / d r at r = 0 is the skew map: R(r) v ~ v + r x v
    v = jnp.array([0.3, -0.2, 0.9])
    jac = jax.jacfwd(lambda r: geometry.axis_angle_to_matrix(r) @ v)(jnp.zeros(3))
    np.testing.assert_allclose(jac, -np.asarray(geometry.skew(v)), atol=1e-6)
    grad = jax.grad(lambda r: geometry.axis_angle_to_matrix(r).sum())(jnp.zeros(3))
    assert np.all(np.isfinite(grad))


def test_quaternion_round_trips_and_matches_scipy():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(40, 4))
    q[0] = [1, 0, 0, 0]
    q[1] = [0, 1, 0, 0]  # 180 degrees: the hard case for matrix -> quaternion
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    with jax.enable_x64(True):
        m = geometry.quaternion_to_matrix(jnp.asarray(q))
        np.testing.assert_allclose(
            m, Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix(), atol=1e-12
        )
        back = np.asarray(geometry.matrix_to_quaternion(m))
        sign = np.sign(np.sum(back * q, axis=1, keepdims=True))
        np.testing.assert_allclose(back * sign, q, atol=1e-9)
        r = geometry.matrix_to_axis_angle(m)
        np.testing.assert_allclose(geometry.axis_angle_to_matrix(r), m, atol=1e-9)
        np.testing.assert_allclose(
            geometry.quaternion_to_matrix(geometry.axis_angle_to_quaternion(r)), m, atol=1e-9
        )


def test_tight_box_uses_only_the_chosen_points_in_numpy_and_jnp():
    points = np.array([[[10.0, 20.0], [50.0, 40.0], [np.nan, 500.0], [30.0, 30.0]]] * 2)
    use = np.array([[True, True, False, True], [False, False, False, False]])
    box = geometry.tight_box(points, use)
    assert isinstance(box, np.ndarray) and box.dtype == np.float64
    np.testing.assert_array_equal(box[0], [10.0, 20.0, 50.0, 40.0])  # NaN / outlier unused
    np.testing.assert_array_equal(box[1], [np.inf, np.inf, -np.inf, -np.inf])  # nothing used
    traced = jax.jit(geometry.tight_box)(jnp.asarray(points, jnp.float32), jnp.asarray(use))
    np.testing.assert_array_equal(traced, box.astype(np.float32))


def test_random_rotations_are_rotations_within_the_angle_limits():
    rot = np.asarray(geometry.random_rotations(jax.random.key(0), (10.0, 0.0, 90.0), (50, 2)))
    assert rot.shape == (50, 2, 3, 3)
    np.testing.assert_allclose(
        rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
    )
    # R_z R_y R_x with no y angle: the x axis stays in the xy plane turned by at most 90 deg
    x_image = rot[..., :, 0]
    np.testing.assert_allclose(x_image[..., 2], 0.0, atol=1e-6)
    assert x_image[..., 0].min() >= -1e-6
    # the z axis tilts by at most 10 degrees (the x angle)
    assert np.degrees(np.arccos(np.clip(rot[..., 2, 2], -1, 1))).max() <= 10.0 + 1e-3


def test_rotation_6d_round_trips_and_orthonormalises_any_two_columns():
    rot = Rotation.random(30, random_state=3).as_matrix()
    with jax.enable_x64(True):
        code = geometry.matrix_to_rotation_6d(jnp.asarray(rot))
        assert code.shape == (30, 6)
        np.testing.assert_allclose(geometry.rotation_6d_to_matrix(code), rot, atol=1e-12)
    # Two arbitrary columns give a rotation whose first column is the first one's direction.
    a = np.random.default_rng(4).normal(size=(20, 6))
    m = np.asarray(geometry.rotation_6d_to_matrix(jnp.asarray(a, jnp.float32)))
    eye = np.broadcast_to(np.eye(3), m.shape)
    np.testing.assert_allclose(m @ np.swapaxes(m, 1, 2), eye, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-5)
    first = a[:, :3] / np.linalg.norm(a[:, :3], axis=1, keepdims=True)
    np.testing.assert_allclose(m[:, :, 0], first, atol=1e-5)
    assert np.all(np.isfinite(geometry.rotation_6d_to_matrix(jnp.zeros((1, 6)))))
