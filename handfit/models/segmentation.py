"""The mask head f_S (beyond the paper): the hand's silhouette read off the image.

Eq. 13's silhouette term needs a mask ŝ that no ground truth gives at test time; the
paper's ŝ is the network's own rendered mesh, which tells the refinement nothing new.
f_S predicts the hand's mask from f_F's map that f_H reads, trained on the ground-truth
masks (``loss.weights.mask``), so that Eq. 13 can fit the rendered silhouette to image
evidence (``handfit.evaluate``). A 3 x 3 convolution and ReLU, then a transposed
convolution with stride ``upsample`` (each cell of the map gives the logits of its
``upsample`` x ``upsample`` pixels): logits at the crop's resolution, e.g. 64 x 64 from the
16 x 16 map of a 64 x 64 crop at stride 4.
"""

from __future__ import annotations

import flax.linen as nn
import jax


class MaskHead(nn.Module):
    """``[B, h, w, C]`` backbone map -> ``[B, h u, w u]`` mask logits (sigmoid: P(hand)),
    u = ``upsample``."""

    width: int = 32
    upsample: int = 4

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.width, (3, 3), name="conv")(features))
        u = (self.upsample, self.upsample)
        return nn.ConvTranspose(1, u, strides=u, padding="VALID", name="logits")(x)[..., 0]


def mask_probabilities(logits: jax.Array, size: int) -> jax.Array:
    """``[B, h, w]`` logits -> ``[B, size, size]`` P(hand), the logits resized bilinearly
    (cell centres on the crop's pixel grid) before the sigmoid."""
    b = logits.shape[0]
    return jax.nn.sigmoid(jax.image.resize(logits, (b, size, size), "linear"))
