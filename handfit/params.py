"""The 63 mesh and camera-space parameters of the paper as a pytree, and the hand they place.

Every entry's neutral value is 0, so a vector of zeros is a valid hand in view:
the quaternion is added to the identity (1, 0, 0, 0) and normalised (so q = 0
means no rotation; docs/method.md, Eq. 4), the scale is ``base_scale *
exp(scale)`` and the translation is an offset from a *base point*.

The hand is placed by its middle-finger MCP joint (canonical joint 9, the root of
the paper's Eq. 8 normalisation): ``mesh = s R(q) (MANO(pose, shape) - mcp) + t``,
so ``t = base + trans`` is where that joint lands in camera space (metres, OpenCV axes).
:func:`mesh` returns that camera-space hand together with the posed hand in the
model's frame (``MANO(pose, shape)``), so no caller runs the hand model twice.
:func:`rotation`, :func:`metric_scale` and :func:`root_position` decode R, s and t;
:func:`encode` is their inverse (:func:`encode_rotation` the rotation's alone).
:func:`regression_vector` is the vector Eq. 5's f_M updates (the 63 numbers, or 65 with
the rotation in its continuous 6D form); :func:`from_regression_vector` its inverse.

The base point is the one placement idea: an argument, ``base_translation`` ([3] or
[B, 3]), of every function that places or encodes a hand (:func:`mesh`,
:func:`root_position`, :func:`encode`, ``augment.generate``, ``refine.refine``), and
parameters mean a hand only together with their base. There are two bases:

* :data:`BASE_TRANSLATION`, the default: a fixed point 0.5 m in front of the camera
  (``refine.fit``, hands a user builds for any camera);
* :func:`crop_base_translation`, per crop: on the ray through the crop's centre, at the
  depth where a hand of :data:`NOMINAL_EXTENT` spans ``1 / crop_scale`` of the crop. The
  DHPE places its estimates there, and refining, augmenting or scoring them passes the
  same base, so the network's parameters are used as they are (no conversion between
  bases exists or is needed).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit import geometry, mano, skeleton

SIZES = (("pose", 45), ("shape", 10), ("quat", 4), ("scale", 1), ("trans", 3))
NUM_PARAMS = sum(n for _, n in SIZES)  # 63
# Neutral placement: the middle MCP half a metre in front of the camera.
BASE_TRANSLATION = (0.0, 0.0, 0.5)
BASE_SCALE = 1.0
NOMINAL_EXTENT = 0.19  # metres: about wrist to middle fingertip of an adult (open hand: 18.9 cm)
IDENTITY = (1.0, 0.0, 0.0, 0.0)  # the quaternion that quat = 0 stands for
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # the identity's 6D form
# Where regression_vector's '6d' form splits: SIZES with the 6D code in place of ``quat``.
_SPLITS_6D = tuple(
    itertools.accumulate(6 if name == "quat" else n for name, n in SIZES[:-1])
)  # (45, 55, 61, 62)
# How Eq. 5's regressor codes the rotation (regression_vector): the paper's quaternion, or
# Zhou et al.'s (CVPR 2019) continuous 6D form, which a network learns far faster.
ROTATION_FORMS = ("quaternion", "6d")


class MeshParams(NamedTuple):
    """pose [B, 45] axis-angle, shape [B, 10], quat [B, 4], scale [B, 1], trans [B, 3]."""

    pose: jnp.ndarray
    shape: jnp.ndarray
    quat: jnp.ndarray
    scale: jnp.ndarray
    trans: jnp.ndarray

    def to_vector(self) -> jnp.ndarray:
        """The 63 numbers ``[B, 63]`` in the paper's order (pose, shape, quat, scale, trans)."""
        return jnp.concatenate(list(self), axis=-1)

    @classmethod
    def from_vector(cls, vector: jnp.ndarray) -> MeshParams:
        """Splits ``[..., 63]`` into its five groups."""
        if vector.shape[-1] != NUM_PARAMS:
            raise ValueError(f"expected [..., {NUM_PARAMS}] parameters, got shape {vector.shape}")
        parts, start = [], 0
        for _, size in SIZES:
            parts.append(vector[..., start : start + size])
            start += size
        return cls(*parts)

    @classmethod
    def zeros(cls, batch: int, dtype=jnp.float32) -> MeshParams:
        """All-neutral parameters for ``batch`` hands: the flat hand, facing the camera."""
        return cls.from_vector(jnp.zeros((batch, NUM_PARAMS), dtype))

    @classmethod
    def initial(cls, batch: int, model: mano.HandModel, dtype=jnp.float32) -> MeshParams:
        """The paper's p(0): zeros except the pose, which is the model's mean pose."""
        p = cls.zeros(batch, dtype)
        return p._replace(pose=jnp.broadcast_to(model.hands_mean.astype(dtype), (batch, 45)))


class Placed(NamedTuple):
    """What :func:`mesh` returns.

    vertices: [B, V, 3], joints: [B, 21, 3] the hand in camera space (metres).
    model_frame: ``mano.ManoOutput`` of ``MANO(pose, shape)``, the posed hand in the
      model's frame, before the rotation, scale and translation (``losses.laplacian_loss``
      reads it).
    """

    vertices: jnp.ndarray
    joints: jnp.ndarray
    model_frame: mano.ManoOutput


def crop_base_translation(K: jax.Array, crop_size: float, crop_scale: float = 1.5) -> jax.Array:
    """``[B, 3]`` the base point of crops with intrinsics ``K [B, 3, 3]``: on the crop
    centre's ray, where a hand of :data:`NOMINAL_EXTENT` spans ``crop_size / crop_scale``
    pixels (how the input pipeline frames a hand).

    Depth z0 = fx * NOMINAL_EXTENT * crop_scale / crop_size; the point is K^-1 (S/2, S/2, 1) z0.
    """
    z0 = K[:, 0, 0] * NOMINAL_EXTENT * crop_scale / crop_size
    centre = jnp.array([crop_size / 2, crop_size / 2, 1.0], K.dtype)
    ray = jnp.linalg.solve(K, jnp.broadcast_to(centre, K.shape[:1] + (3,))[..., None])[..., 0]
    return ray * z0[:, None]


def rotation(params: MeshParams) -> jnp.ndarray:
    """R: rotation matrices ``[B, 3, 3]`` of ``(1, 0, 0, 0) + quat``, normalised."""
    return geometry.quaternion_to_matrix(params.quat + jnp.asarray(IDENTITY, params.quat.dtype))


def metric_scale(params: MeshParams, base_scale: float = BASE_SCALE) -> jnp.ndarray:
    """s: ``[B]`` the hand's size over the model's, ``base_scale * exp(scale)``."""
    return (base_scale * jnp.exp(params.scale))[:, 0]


def root_position(
    params: MeshParams, base_translation: jax.Array | tuple = BASE_TRANSLATION
) -> jnp.ndarray:
    """t: ``[B, 3]`` where the middle MCP lands in camera space, ``base_translation + trans``
    (base ``[3]`` or ``[B, 3]``, metres)."""
    return jnp.asarray(base_translation, params.trans.dtype) + params.trans


def encode_rotation(rotation: jnp.ndarray) -> jnp.ndarray:
    """The ``quat`` entries ``[B, 4]`` of rotation matrices ``[B, 3, 3]`` (inverse of
    :func:`rotation`)."""
    return geometry.matrix_to_quaternion(rotation) - jnp.asarray(IDENTITY, rotation.dtype)


def encode(
    *,
    pose: jnp.ndarray,
    shape: jnp.ndarray,
    rotation: jnp.ndarray,
    scale: jnp.ndarray,
    position: jnp.ndarray,
    base_translation: jax.Array | tuple = BASE_TRANSLATION,
    base_scale: float = BASE_SCALE,
) -> MeshParams:
    """The parameters of a hand with R = ``rotation [B, 3, 3]``, s = ``scale [B]`` (> 0) and
    its middle MCP at ``position [B, 3]`` (camera space, metres), the inverse of
    :func:`rotation`, :func:`metric_scale` and :func:`root_position`; ``pose [B, 45]`` and
    ``shape [B, 10]`` are taken as they are."""
    return MeshParams(
        pose=pose,
        shape=shape,
        quat=encode_rotation(rotation),
        scale=jnp.log(scale / base_scale)[:, None],
        trans=position - jnp.asarray(base_translation, position.dtype),
    )


def regression_vector(params: MeshParams, rotation_form: str = "quaternion") -> jnp.ndarray:
    """The vector that Eq. 5 updates additively: ``[B, 63]``, :meth:`MeshParams.to_vector`,
    for 'quaternion' (the paper); for '6d' ``[B, 65]``, the rotation's 6D form
    (``geometry.matrix_to_rotation_6d``) minus the identity's in place of ``quat``, so zeros
    still mean no rotation and every rotation has one continuous code."""
    if rotation_form == "quaternion":
        return params.to_vector()
    _check_rotation_form(rotation_form)
    code = geometry.matrix_to_rotation_6d(rotation(params)) - jnp.asarray(
        _IDENTITY_6D, params.quat.dtype
    )
    return jnp.concatenate([params.pose, params.shape, code, params.scale, params.trans], -1)


def from_regression_vector(vector: jnp.ndarray, rotation_form: str = "quaternion") -> MeshParams:
    """Inverse of :func:`regression_vector`: the parameters of ``[B, 63]`` or ``[B, 65]``
    (the 6D code's rotation, by Gram-Schmidt, stored as ``quat``)."""
    if rotation_form == "quaternion":
        return MeshParams.from_vector(vector)
    _check_rotation_form(rotation_form)
    if vector.shape[-1] != NUM_PARAMS + 2:
        raise ValueError(f"expected [..., {NUM_PARAMS + 2}] for '6d', got shape {vector.shape}")
    pose, shape, code, scale, trans = jnp.split(vector, _SPLITS_6D, axis=-1)
    rot = geometry.rotation_6d_to_matrix(code + jnp.asarray(_IDENTITY_6D, vector.dtype))
    return MeshParams(pose, shape, encode_rotation(rot), scale, trans)


def _check_rotation_form(rotation_form: str) -> None:
    if rotation_form not in ROTATION_FORMS:
        raise ValueError(f"rotation_form={rotation_form!r}; expected one of {ROTATION_FORMS}")


def mesh(
    params: MeshParams,
    model: mano.HandModel,
    *,
    base_translation: jax.Array | tuple = BASE_TRANSLATION,
    base_scale: float = BASE_SCALE,
) -> Placed:
    """The hand in camera space, ``s R(q) (MANO(pose, shape) - mcp) + t``, and in the model's frame.

    Args:
      params: the 63 parameters, batch B.
      model: the hand model; ``pose`` is read as full axis-angle with a flat hand mean.
      base_translation: [3] or [B, 3], where ``trans = 0`` puts the middle MCP (metres):
        :data:`BASE_TRANSLATION` or the crop's :func:`crop_base_translation`.
      base_scale: the scale at ``scale = 0``.
    Returns:
      :class:`Placed`: vertices [B, V, 3] and joints [B, 21, 3] in camera space (metres),
      and ``model_frame``, the posed hand before the placement.
    """
    frame = mano.forward(model, params.pose, params.shape)
    root = frame.joints[:, skeleton.MIDDLE_MCP : skeleton.MIDDLE_MCP + 1]
    rot = rotation(params)
    scale = metric_scale(params, base_scale)[:, None, None]
    trans = root_position(params, base_translation)[:, None]

    def place(points):
        return scale * jnp.einsum("bij,bnj->bni", rot, points - root) + trans

    return Placed(vertices=place(frame.vertices), joints=place(frame.joints), model_frame=frame)
