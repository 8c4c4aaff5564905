"""The 63 mesh and camera-space parameters of the paper as a pytree, and the mesh they give.

Every entry's neutral value is 0, so a vector of zeros is a valid hand in view:
the quaternion is added to the identity (1, 0, 0, 0) and normalised (so q = 0
means no rotation; docs/method.md, Eq. 4), the scale is ``base_scale *
exp(scale)`` and the translation is an offset from ``base_translation``.

The hand is placed by its middle-finger MCP joint (canonical joint 9, the root of
the paper's Eq. 8 normalisation): ``mesh = s R(q) (MANO(pose, shape) - mcp) + t``,
so ``t`` is where that joint lands in camera space (metres, OpenCV axes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from handfit import geometry, mano, skeleton

SIZES = (("pose", 45), ("shape", 10), ("quat", 4), ("scale", 1), ("trans", 3))
NUM_PARAMS = sum(n for _, n in SIZES)  # 63
# Neutral placement: the middle MCP half a metre in front of the camera.
BASE_TRANSLATION = (0.0, 0.0, 0.5)
BASE_SCALE = 1.0


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


def rotation(params: MeshParams) -> jnp.ndarray:
    """Rotation matrices ``[B, 3, 3]`` of ``(1, 0, 0, 0) + quat``, normalised."""
    identity = jnp.array([1.0, 0.0, 0.0, 0.0], params.quat.dtype)
    return geometry.quaternion_to_matrix(params.quat + identity)


def mesh(
    params: MeshParams,
    model: mano.HandModel,
    *,
    base_translation: tuple[float, float, float] = BASE_TRANSLATION,
    base_scale: float = BASE_SCALE,
) -> mano.ManoOutput:
    """The hand in camera space: ``s R(q) (MANO(pose, shape) - mcp) + t``.

    Args:
      params: the 63 parameters, batch B.
      model: the hand model; ``pose`` is read as full axis-angle with a flat hand mean.
      base_translation: where ``trans = 0`` puts the middle MCP (metres).
      base_scale: the scale at ``scale = 0``.
    Returns:
      ``ManoOutput(vertices [B, V, 3], joints [B, 21, 3])`` in camera space (metres).
    """
    out = mano.forward(model, params.pose, params.shape)
    root = out.joints[:, skeleton.MIDDLE_MCP : skeleton.MIDDLE_MCP + 1]
    rot = rotation(params)
    scale = (base_scale * jnp.exp(params.scale))[..., None]  # [B, 1, 1]
    trans = (jnp.asarray(base_translation, params.trans.dtype) + params.trans)[:, None]

    def place(points):
        return scale * jnp.einsum("bij,bnj->bni", rot, points - root) + trans

    return mano.ManoOutput(vertices=place(out.vertices), joints=place(out.joints))
