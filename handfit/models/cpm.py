"""The Convolutional Pose Machine f_H (Wei et al. 2016): heat maps per stage, and their readouts.

Design (the paper only says "CPM", 21 x 32 x 32 maps from a 224 x 224 crop):

* Input is a feature map (any stride), as in Wei et al. and the hand CPM of Simon et
  al., which run on an early (stride-8) feature map: by default the ResNet's
  ``'stride8'`` feature (28 x 28 x 512 for ResNet-50 at 224^2, see ``resnet.py``).
  With ``stem=True`` the CPM takes the image itself and runs its own VGG-style
  stride-8 stem (three blocks of two 3x3 convs and a 2x2 max-pool).
* Stage 1 maps features to beliefs; every later stage sees the features concatenated
  with the previous stage's beliefs and refines them with ``stage_depth`` large
  (``stage_kernel`` x ``stage_kernel``) convolutions, as in Wei et al.; stages work at
  the feature map's resolution. No normalisation layers: the module has only
  ``params``.
* Output size: a 224 crop is 28 cells at stride 8 but 32 cells of 7 pixels in the
  paper. Each stage's maps are resized bilinearly (half-pixel centres, ``jax.image``)
  to exactly ``heatmap_size`` x ``heatmap_size``, whatever the input's size. Both grids
  cover the whole crop with cell centres at (j + 0.5) * crop / cells, so the resize
  keeps the geometry: heat-map cell (i, j) covers crop pixels [j s, (j + 1) s) x
  [i s, (i + 1) s), s = crop_size / heatmap_size, with centre ((j + 0.5) s, (i + 0.5) s).
* Returned: every stage's maps stacked, ``[S, B, heatmap_size, heatmap_size, J]``
  (channels last); the final estimate is ``maps[-1]``. ``losses.heatmap_loss`` takes
  the stack (intermediate supervision).

Readouts give 2D joints (x, y) in crop pixels: :func:`hard_argmax` (evaluation, Eq. 3)
and the differentiable :func:`soft_argmax` (a softmax over each map, sharpened by
``beta``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from handfit import skeleton

# Softmax sharpness of soft_argmax for maps whose peak is about 1 (Gaussian targets).
DEFAULT_BETA = 25.0


class CPM(nn.Module):
    """Convolutional Pose Machine: features (or an image) to ``num_stages`` sets of heat maps.

    Attributes:
      num_joints: J, maps per stage.
      num_stages: S >= 1; stage 1 plus S - 1 refinement stages.
      width: channels of every convolution.
      stage_kernel: kernel of the refinement stages' convolutions (Wei et al.: 7).
      stage_depth: large convolutions per refinement stage (Wei et al.: 5).
      heatmap_size: side of the returned maps (32 in the paper).
      stem: if True the input is an image [B, H, W, 3] and a VGG-style stride-8 stem
        runs first; if False it is a feature map [B, h, w, C].
      stem_widths: channels of the stem's three blocks.
      dtype: computation dtype.
    """

    num_joints: int = skeleton.NUM_JOINTS
    num_stages: int = 3
    width: int = 128
    stage_kernel: int = 7
    stage_depth: int = 5
    heatmap_size: int = 32
    stem: bool = False
    stem_widths: Sequence[int] = (64, 128, 256)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Heat maps of every stage.

        Args:
          x: [B, h, w, C] feature map, or [B, H, W, 3] image in [0, 1] when ``stem``.
        Returns:
          [S, B, heatmap_size, heatmap_size, J], stage 1 first.
        """
        if self.num_stages < 1:
            raise ValueError(f"a CPM needs at least one stage, got num_stages={self.num_stages}")
        conv = partial(nn.Conv, dtype=self.dtype, padding="SAME")
        x = x.astype(self.dtype)
        if self.stem:
            for i, w in enumerate(self.stem_widths):
                for k in range(2):
                    x = nn.relu(conv(w, (3, 3), name=f"stem{i + 1}_{k + 1}")(x))
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        for k in range(2):  # the shared "CPM features" every stage sees
            x = nn.relu(conv(self.width, (3, 3), name=f"features_{k + 1}")(x))
        features = x

        beliefs = []
        for k in range(3):
            x = nn.relu(conv(self.width, (3, 3), name=f"stage1_conv{k + 1}")(x))
        x = nn.relu(conv(4 * self.width, (1, 1), name="stage1_conv4")(x))
        belief = conv(self.num_joints, (1, 1), name="stage1_out")(x)
        beliefs.append(belief)
        kernel = (self.stage_kernel, self.stage_kernel)
        for s in range(2, self.num_stages + 1):
            x = jnp.concatenate([features, belief], axis=-1)
            for k in range(self.stage_depth):
                x = nn.relu(conv(self.width, kernel, name=f"stage{s}_conv{k + 1}")(x))
            x = nn.relu(conv(self.width, (1, 1), name=f"stage{s}_conv{self.stage_depth + 1}")(x))
            belief = conv(self.num_joints, (1, 1), name=f"stage{s}_out")(x)
            beliefs.append(belief)

        maps = jnp.stack(beliefs)  # [S, B, h, w, J]
        s, b, h, w, j = maps.shape
        if (h, w) != (self.heatmap_size, self.heatmap_size):
            maps = jax.image.resize(
                maps, (s, b, self.heatmap_size, self.heatmap_size, j), method="linear"
            )
        return maps


CPMTiny = partial(CPM, num_stages=2, width=8, stage_kernel=3, stage_depth=2, stem_widths=(8, 8, 8))


def _cell_centres(size: int, crop_size: float, dtype) -> jnp.ndarray:
    """Crop-pixel centres ``(k + 0.5) * crop_size / size`` of ``size`` cells, [size]."""
    return (jnp.arange(size, dtype=dtype) + 0.5) * (crop_size / size)


def _cell_distribution(heatmaps: jnp.ndarray, beta: float) -> jnp.ndarray:
    """``softmax(beta * map)`` over each joint's cells: [..., H, W, J] -> [..., J, H, W]."""
    *lead, h, w, j = heatmaps.shape
    flat = jnp.moveaxis(heatmaps, -1, -3).reshape(*lead, j, h * w)
    return jax.nn.softmax(beta * flat.astype(jnp.float32), axis=-1).reshape(*lead, j, h, w)


def soft_argmax(
    heatmaps: jnp.ndarray, *, crop_size: float, beta: float = DEFAULT_BETA
) -> jnp.ndarray:
    """Differentiable joint locations: the mean cell centre under ``softmax(beta * map)``.

    Args:
      heatmaps: [..., H, W, J] maps (e.g. ``maps[-1]`` of the CPM: [B, H, W, J]).
      crop_size: side of the square crop the maps cover, pixels.
      beta: sharpness; with peaks near 1 the default makes the far background's weight
        negligible on a 32 x 32 map.
    Returns:
      [..., J, 2] (x, y) in crop pixels.
    """
    return soft_argmax_with_spread(heatmaps, crop_size=crop_size, beta=beta)[0]


def soft_argmax_with_spread(
    heatmaps: jnp.ndarray, *, crop_size: float, beta: float = DEFAULT_BETA
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """:func:`soft_argmax` and how unsure it is, from one softmax over each map.

    Args:
      heatmaps: [..., H, W, J] maps, as for :func:`soft_argmax`.
      crop_size: side of the square crop the maps cover, pixels.
      beta: sharpness, as for :func:`soft_argmax`.
    Returns:
      ``(joints, spread)``: [..., J, 2] the mean (x, y) cell centre under
      ``softmax(beta * map)``, crop pixels, and [..., J] ``sqrt(var(x) + var(y))`` of the
      cell centres under that distribution, crop pixels: near 0 for one sharp peak, large
      for a flat map or for two peaks.
    """
    *_, h, w, _ = heatmaps.shape
    prob = _cell_distribution(heatmaps, beta)
    xs, ys = _cell_centres(w, crop_size, prob.dtype), _cell_centres(h, crop_size, prob.dtype)
    means, variance = [], 0.0
    for marginal, centres in ((prob.sum(axis=-2), xs), (prob.sum(axis=-1), ys)):
        mean = jnp.einsum("...c,c->...", marginal, centres)  # marginal: [..., J, W or H]
        variance = variance + jnp.einsum("...c,c->...", marginal, centres**2) - mean**2
        means.append(mean)
    return jnp.stack(means, axis=-1), jnp.sqrt(jnp.maximum(variance, 0.0))


def hard_argmax(heatmaps: jnp.ndarray, *, crop_size: float) -> jnp.ndarray:
    """Joint locations at the centre of each map's highest cell (not differentiable).

    Args:
      heatmaps: [..., H, W, J] maps.
      crop_size: side of the square crop the maps cover, pixels.
    Returns:
      [..., J, 2] (x, y) in crop pixels: ((col + 0.5) s, (row + 0.5) s), s = crop / W.
    """
    *lead, h, w, j = heatmaps.shape
    flat = jnp.moveaxis(heatmaps, -1, -3).reshape(*lead, j, h * w)
    index = jnp.argmax(flat, axis=-1)
    row, col = index // w, index % w
    dtype = jnp.result_type(heatmaps.dtype, jnp.float32)
    x = (col.astype(dtype) + 0.5) * (crop_size / w)
    y = (row.astype(dtype) + 0.5) * (crop_size / h)
    return jnp.stack([x, y], axis=-1)
