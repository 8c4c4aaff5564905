"""The paper's two dense heads: the mesh estimator f_M (Eq. 5) and the 2D pose refiner f_R (Eq. 6).

Both are one Dense layer over a concatenation in the paper (``hidden=()``, the default);
``hidden`` puts ReLU layers before it (as HMR's regressor has), which a small network
trained from scratch needs (``config.model.mesh_hidden``, ``refiner_hidden``). Both are
meant to be called once per
iteration from a loop that also runs the hand model (``handfit.params.mesh``):

    p = params.MeshParams.initial(batch, model).to_vector()        # p(0)   [B, 63]
    j2d = cpm.soft_argmax(maps[-1], crop_size=224.0)                # j2D(0) [B, 21, 2]
    for t in range(3):
        joints3d = params.mesh(params.MeshParams.from_vector(p), model).joints
        p, j2d = f_m(features, j2d, p), f_r(p, features, joints3d, j2d)

(``p`` on the right of the last line is p(t) for both heads, as in Eqs. 5 and 6.)
Calling one module instance in every iteration shares its weights across iterations.

2D joints enter both heads in crop pixels and are normalised inside to
``u / crop_size - 0.5`` (the crop's centre at 0, its edges at -0.5 and 0.5), so the
heads' weights do not depend on the crop resolution. f_R predicts in that unit and
returns pixels.

Both heads start close to "no change": f_M adds ``Dense(...)`` to p(t) (Eq. 5) and
its kernel is drawn at ``init_scale`` (default 1e-3) of LeCun's scale, so p(1) is
within about 1e-3 of p(0); f_R is written ``j2D(t) + Dense(...)`` with the same small
kernel. An affine map of the concatenation plus the identity on its j2D block is
still one affine map of the concatenation, i.e. the paper's single dense layer;
writing it this way only makes the initial refiner return its input rather than
the crop's centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from handfit import params as params_lib
from handfit import skeleton

NUM_JOINTS = skeleton.NUM_JOINTS


def _small_init(scale: float) -> nn.initializers.Initializer:
    """LeCun-normal kernel initialiser multiplied by ``scale``."""
    return nn.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


def _dense_head(x: jnp.ndarray, out: int, hidden: Sequence[int], init_scale: float) -> jnp.ndarray:
    """``hidden`` ReLU layers (none: the paper's single affine layer), then a small-init Dense."""
    for i, width in enumerate(hidden):
        x = nn.relu(nn.Dense(width, name=f"hidden{i}")(x))
    return nn.Dense(out, kernel_init=_small_init(init_scale), name="dense")(x)


def normalize_joints2d(joints2d: jnp.ndarray, crop_size: float) -> jnp.ndarray:
    """Crop pixels ``[..., 2]`` to ``u / crop_size - 0.5`` (centre 0, edges +-0.5)."""
    return joints2d / crop_size - 0.5


def denormalize_joints2d(normalized: jnp.ndarray, crop_size: float) -> jnp.ndarray:
    """Inverse of :func:`normalize_joints2d`: ``(n + 0.5) * crop_size`` pixels."""
    return (normalized + 0.5) * crop_size


class MeshRegressor(nn.Module):
    """f_M, one step of Eq. 5: ``p(t+1) = p(t) + Dense([f, j2D(t), p(t)])``.

    The sum is taken on ``params.regression_vector(p, rotation_form)``: the 63 numbers
    ('quaternion', the paper), or 65 with the rotation in its continuous 6D form ('6d'),
    which is then stored back as the quaternion; either way p(t) and p(t+1) are the 63.

    Attributes:
      crop_size: side of the square input crop in pixels (normalises ``joints2d``).
      init_scale: the kernel's scale relative to LeCun-normal; small so p(1) ~ p(0).
      hidden: widths of ReLU layers before the output layer; () is the paper's one layer.
      rotation_form: 'quaternion' or '6d' (``params.ROTATION_FORMS``).
      feature_width: > 0 reads f through ``LayerNorm(Dense(feature_width)(f))`` (not in the
        paper); 0 reads f itself.
    """

    crop_size: float = 224.0
    init_scale: float = 1e-3
    hidden: Sequence[int] = ()
    rotation_form: str = "quaternion"
    feature_width: int = 0

    @nn.compact
    def __call__(
        self, features: jnp.ndarray, joints2d: jnp.ndarray, params: jnp.ndarray
    ) -> jnp.ndarray:
        """Next parameters.

        Args:
          features: [B, D] pooled image feature f (D = 2048 for ResNet-50).
          joints2d: [B, 21, 2] current 2D joints j2D(t), crop pixels (x, y).
          params: [B, 63] current parameters p(t) (``MeshParams.to_vector()``).
        Returns:
          [B, 63] p(t+1). The Dense layer's input has D + 42 + 63 entries (2153 for
          ResNet-50; 65 instead of 63 for '6d'; ``feature_width`` instead of D if > 0).
        """
        batch = features.shape[0]
        if self.feature_width:
            features = nn.Dense(self.feature_width, name="feature_proj")(features)
            features = nn.LayerNorm(name="feature_norm")(features)
        j2d = normalize_joints2d(joints2d, self.crop_size).reshape(batch, -1)
        current = params_lib.MeshParams.from_vector(params)
        code = params_lib.regression_vector(current, self.rotation_form).astype(params.dtype)
        x = jnp.concatenate([features, j2d.astype(features.dtype), code], axis=-1)
        code = code + _dense_head(x, code.shape[-1], self.hidden, self.init_scale)
        return params_lib.from_regression_vector(code, self.rotation_form).to_vector()


class PoseRefiner(nn.Module):
    """f_R, Eq. 6: ``j2D(t+1) = f_R([p(t), f, J(m(p(t))), j2D(t)])``, one affine layer.

    Attributes:
      crop_size: side of the square input crop in pixels.
      init_scale: the kernel's scale relative to LeCun-normal; small so j2D(1) ~ j2D(0).
      hidden: widths of ReLU layers before the output layer; () is the paper's one layer.
    """

    crop_size: float = 224.0
    init_scale: float = 1e-3
    hidden: Sequence[int] = ()

    @nn.compact
    def __call__(
        self,
        params: jnp.ndarray,
        features: jnp.ndarray,
        joints3d: jnp.ndarray,
        joints2d: jnp.ndarray,
    ) -> jnp.ndarray:
        """Refined 2D joints.

        Args:
          params: [B, 63] parameters p(t).
          features: [B, D] pooled image feature f.
          joints3d: [B, 21, 3] the mesh's joints J(m(p(t))) in camera space (metres).
          joints2d: [B, 21, 2] current 2D joints j2D(t), crop pixels (x, y).
        Returns:
          [B, 21, 2] j2D(t+1) in crop pixels. The Dense layer's input has
          63 + D + 63 + 42 entries (2216 for D = 2048); its output has 42.
        """
        batch = features.shape[0]
        j2d = normalize_joints2d(joints2d, self.crop_size)
        x = jnp.concatenate(
            [params, features, joints3d.reshape(batch, -1), j2d.reshape(batch, -1)], axis=-1
        )
        delta = _dense_head(x, 2 * NUM_JOINTS, self.hidden, self.init_scale)
        return denormalize_joints2d(j2d + delta.reshape(batch, NUM_JOINTS, 2), self.crop_size)
