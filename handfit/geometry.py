"""Rotations (axis-angle, quaternion, 6D), random rotations and the 2D points' tight box, in jnp."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array | np.ndarray

# Below this squared angle the axis-angle maps use their Taylor series: exact to
# float32 precision and free of the 0/0 at zero rotation, in values and gradients.
_SMALL_ANGLE2 = 1e-6


def skew(v: jnp.ndarray) -> jnp.ndarray:
    """Cross-product matrices ``[..., 3, 3]`` of vectors ``v: [..., 3]``."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], -1),
            jnp.stack([z, zero, -x], -1),
            jnp.stack([-y, x, zero], -1),
        ],
        -2,
    )


def axis_angle_to_matrix(r: jnp.ndarray) -> jnp.ndarray:
    """Rodrigues' formula: axis-angle ``r: [..., 3]`` to rotation matrices ``[..., 3, 3]``.

    ``R = I + a K + b K^2`` with ``K = skew(r)``, ``a = sin(t)/t``, ``b = (1 - cos t)/t^2``
    and ``t = |r|``; near ``t = 0`` both come from their series (no NaN in values or
    gradients at zero rotation).
    """
    t2 = jnp.sum(r * r, axis=-1)
    small = t2 < _SMALL_ANGLE2
    t2_safe = jnp.where(small, 1.0, t2)
    t = jnp.sqrt(t2_safe)
    a = jnp.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, jnp.sin(t) / t)
    b = jnp.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, (1.0 - jnp.cos(t)) / t2_safe)
    k = skew(r)
    eye = jnp.eye(3, dtype=r.dtype)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_axis_angle(m: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrices ``[..., 3, 3]`` to axis-angle ``[..., 3]`` (angle in [0, pi]).

    Goes through the quaternion, which is stable at every angle.
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def quaternion_to_matrix(q: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    """Quaternions ``q: [..., 4]`` as (w, x, y, z), normalised here, to matrices ``[..., 3, 3]``.

    A quaternion of norm below ``sqrt(eps)`` is scaled as if its norm were that (no NaN).
    """
    q = q / jnp.sqrt(jnp.maximum(jnp.sum(q * q, axis=-1, keepdims=True), eps))
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quaternion(m: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrices ``[..., 3, 3]`` to unit quaternions ``[..., 4]`` (w, x, y, z), w >= 0.

    Shepperd's method: of the four candidate formulas it takes the one with the
    largest denominator, so every rotation is handled stably.
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    cands = jnp.stack(
        [
            jnp.stack(
                [
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        -2,
    )  # [..., 4 candidates, 4]; candidate i is 4 q_i q
    diag = jnp.stack([1 + trace, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = jnp.argmax(diag, axis=-1)
    q = jnp.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def rotation_6d_to_matrix(r6: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    """Zhou et al.'s continuous 6D rotation form ``[..., 6]`` (two columns, a then b) to
    matrices ``[..., 3, 3]`` by Gram-Schmidt: x = a/|a|, y = (b - (x.b) x)/|.|, z = x cross y.

    Unlike a quaternion (q and -q are one rotation), every rotation has one 6D form and
    nearby rotations have nearby forms, so a regressor's target is continuous. Columns of
    norm below ``sqrt(eps)`` are scaled as if their norm were that (no NaN).
    """

    def unit(v):
        return v / jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1, keepdims=True), eps))

    x = unit(r6[..., 0:3])
    b = r6[..., 3:6]
    y = unit(b - jnp.sum(x * b, axis=-1, keepdims=True) * x)
    return jnp.stack([x, y, jnp.cross(x, y)], axis=-1)


def matrix_to_rotation_6d(m: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrices ``[..., 3, 3]`` to their 6D form ``[..., 6]``: the first column,
    then the second (inverse of :func:`rotation_6d_to_matrix` on rotations)."""
    return jnp.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def quaternion_to_axis_angle(q: jnp.ndarray) -> jnp.ndarray:
    """Quaternions ``[..., 4]`` (w, x, y, z) to axis-angle ``[..., 3]``, angle in [0, pi]."""
    q = jnp.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s2 = jnp.sum(v * v, axis=-1)
    small = s2 < _SMALL_ANGLE2
    s = jnp.sqrt(jnp.where(small, 1.0, s2))
    angle = 2.0 * jnp.arctan2(s, q[..., 0])
    # angle / sin(angle / 2) -> 2 / w as the rotation vanishes.
    factor = jnp.where(small, 2.0 / q[..., 0], angle / s)
    return v * factor[..., None]


def axis_angle_to_quaternion(r: jnp.ndarray) -> jnp.ndarray:
    """Axis-angle ``[..., 3]`` to unit quaternions ``[..., 4]`` (w, x, y, z)."""
    t2 = jnp.sum(r * r, axis=-1)
    small = t2 < _SMALL_ANGLE2
    t = jnp.sqrt(jnp.where(small, 1.0, t2))
    half_sinc = jnp.where(small, 0.5 - t2 / 48.0, jnp.sin(t / 2) / t)
    w = jnp.where(small, 1.0 - t2 / 8.0, jnp.cos(t / 2))
    return jnp.concatenate([w[..., None], r * half_sinc[..., None]], -1)


def tight_box(points: Array, use: Array) -> Array:
    """``[..., 4]`` (u_min, v_min, u_max, v_max) of the 2D ``points [..., N, 2]`` where
    ``use [..., N]`` (bool) holds; +inf / -inf where no point is used.

    The one definition of the joints' tight box (Eq. 8's c, the crop, the generated
    examples' ``norm_size``): NumPy in, NumPy out (the input pipeline, in float64); jnp
    in, jnp out (traced).
    """
    xp = np if isinstance(points, np.ndarray) else jnp
    use = use[..., None]
    lo = xp.min(xp.where(use, points, xp.inf), axis=-2)
    hi = xp.max(xp.where(use, points, -xp.inf), axis=-2)
    return xp.concatenate([lo, hi], axis=-1)


def random_rotations(key: jax.Array, max_deg, shape: tuple) -> jnp.ndarray:
    """Rotations ``[*shape, 3, 3]`` R_z R_y R_x, each angle uniform in +-max_deg (x, y, z)."""
    limits = jnp.deg2rad(jnp.asarray(max_deg, jnp.float32))
    angles = jax.random.uniform(key, (*shape, 3), minval=-1.0, maxval=1.0) * limits
    eye = jnp.eye(3)
    rx, ry, rz = (axis_angle_to_matrix(angles[..., i : i + 1] * eye[i]) for i in range(3))
    return rz @ ry @ rx
