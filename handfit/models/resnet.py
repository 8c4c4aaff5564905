"""ResNet v1.5 backbones (f_F) with named intermediate features, and torchvision weight loading.

The network is torchvision's ResNet (bottleneck blocks, stride on the 3x3 conv, i.e.
v1.5) in NHWC with the same explicit paddings, so torchvision's ImageNet weights give
the same features. It returns the global-pooled feature f (2048-d for ResNet-50) and
a dict of intermediate feature maps:

    ========== ========================= ===================================
    name       torchvision               ResNet-50 at 224 x 224
    ========== ========================= ===================================
    'stem'     after maxpool (stride 4)  [B, 56, 56, 64]
    'stride4'  layer1                    [B, 56, 56, 256]
    'stride8'  layer2                    [B, 28, 28, 512]   <- the CPM's input
    'stride16' layer3                    [B, 14, 14, 1024]
    'stride32' layer4                    [B, 7, 7, 2048]
    ========== ========================= ===================================

Images come in as float NHWC in [0, 1] and are standardised with ImageNet's mean and
standard deviation inside (``normalize_input``), as torchvision's weights expect.
Variables: ``params`` and ``batch_stats``; call with ``train=True`` and
``mutable=['batch_stats']`` to train, ``train=False`` to use the running averages.

ImageNet-pretrained weights (optional; training from scratch is the default) are read
from a local ``.npz`` holding torchvision's ``state_dict`` under its own key names,
without ``fc.*``. To make one, on a machine with torch and a network:

    import numpy as np, torch, torchvision
    net = torchvision.models.resnet50(weights="IMAGENET1K_V1")
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    np.savez("resnet50_imagenet.npz", **state)

then ``variables = load_torchvision_weights("resnet50_imagenet.npz", variables)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXPANSION = 4  # bottleneck output channels / width

ModuleDef = Callable[..., nn.Module]


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 bottleneck with a projection shortcut when needed."""

    filters: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    project: bool

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, H, W, C] -> [B, H / strides, W / strides, 4 * filters]."""
        s = (self.strides, self.strides)
        y = nn.relu(self.norm(name="bn1")(self.conv(self.filters, (1, 1), name="conv1")(x)))
        y = self.conv(self.filters, (3, 3), s, padding=((1, 1), (1, 1)), name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(EXPANSION * self.filters, (1, 1), name="conv3")(y)
        # Zero-initialised last scale: each block starts as the identity (as flax/examples).
        y = self.norm(scale_init=nn.initializers.zeros_init(), name="bn3")(y)
        if self.project:
            x = self.conv(EXPANSION * self.filters, (1, 1), s, name="downsample_0")(x)
            x = self.norm(name="downsample_1")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """ResNet v1.5 with bottleneck blocks; returns the pooled feature and named feature maps.

    Attributes:
      stage_sizes: blocks per stage (ResNet-50: (3, 4, 6, 3)).
      num_filters: width of the first stage (64); stage k has ``num_filters * 2^k``.
      normalize_input: standardise [0, 1] images with ImageNet's mean and std first.
      bn_axis_name: mapped axis over which BatchNorm averages batch statistics
        (e.g. 'data' inside shard_map), or None for per-device statistics.
      dtype: computation dtype (parameters stay float32).
    """

    stage_sizes: Sequence[int]
    num_filters: int = 64
    normalize_input: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        """Length of the pooled feature f (2048 for ResNet-50)."""
        return EXPANSION * self.num_filters * 2 ** (len(self.stage_sizes) - 1)

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, *, train: bool
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """Pooled feature and feature maps.

        Args:
          x: [B, H, W, 3] images in [0, 1].
          train: use (and update, with ``mutable=['batch_stats']``) batch statistics.
        Returns:
          ``(f, features)``: f [B, feature_dim] is the global average of the last map;
          features maps 'stem', 'stride4', ..., 'stride32' to [B, h, w, c] (see module doc).
        """
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype, padding="VALID")
        norm = partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,  # torch's momentum 0.1
            epsilon=1e-5,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
        )
        x = x.astype(self.dtype)
        if self.normalize_input:
            x = (x - jnp.asarray(IMAGENET_MEAN, self.dtype)) / jnp.asarray(IMAGENET_STD, self.dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name="conv1")(x)
        x = nn.relu(norm(name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = {"stem": x}
        for i, size in enumerate(self.stage_sizes):
            for j in range(size):
                x = BottleneckBlock(
                    filters=self.num_filters * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    project=j == 0,
                    name=f"layer{i + 1}_{j}",
                )(x)
            features[f"stride{4 * 2**i}"] = x
        return jnp.mean(x, axis=(1, 2)), features


ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNetTiny = partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=4)

# Flax leaf -> (torchvision suffix, transform of the torch array into the Flax layout).
_LEAVES = {
    ("params", "kernel"): ("weight", lambda a: np.transpose(a, (2, 3, 1, 0))),  # OIHW -> HWIO
    ("params", "scale"): ("weight", lambda a: a),
    ("params", "bias"): ("bias", lambda a: a),
    ("batch_stats", "mean"): ("running_mean", lambda a: a),
    ("batch_stats", "var"): ("running_var", lambda a: a),
}


def _torch_key(collection: str, path: tuple[str, ...]) -> str:
    """('params', ('layer1_0', 'downsample_0', 'kernel')) -> 'layer1.0.downsample.0.weight'."""
    modules = [re.sub(r"_(\d+)$", r".\1", name) for name in path[:-1]]
    return ".".join(modules + [_LEAVES[(collection, path[-1])][0]])


def load_torchvision_weights(path: str | os.PathLike, variables: Any) -> dict[str, Any]:
    """Variables of a ResNet filled from a torchvision ``state_dict`` saved as ``.npz``.

    Args:
      path: the ``.npz`` (see the module docstring for how to write one); ``fc.*`` and
        ``*.num_batches_tracked`` entries are ignored, any other unused key is an error.
      variables: this ResNet's variables ``{'params', 'batch_stats'}`` (from ``init`` or
        ``jax.eval_shape`` of it; only structure, shapes and dtypes are read). For a ResNet
        inside a larger model, pass and put back its subtree.
    Returns:
      ``{'params': ..., 'batch_stats': ...}`` with the same structure, as NumPy arrays;
      conv kernels transposed from torch's [O, I, kh, kw] to Flax's [kh, kw, I, O].
    Raises:
      FileNotFoundError, KeyError (a missing key) or ValueError (a shape mismatch or an
      unexpected key), each naming the file and the key.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no pretrained ResNet weights at {path}")
    with np.load(path, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    loaded, used = {}, set()
    for collection in ("params", "batch_stats"):
        flat = traverse_util.flatten_dict(dict(variables[collection]))
        out = {}
        for leaf_path, leaf in flat.items():
            key = _torch_key(collection, leaf_path)
            if key not in state:
                raise KeyError(
                    f"{path}: missing key {key!r} (for {collection}/{'/'.join(leaf_path)})"
                )
            value = _LEAVES[(collection, leaf_path[-1])][1](state[key])
            if value.shape != tuple(leaf.shape):
                raise ValueError(
                    f"{path}: key {key!r} has shape {state[key].shape}, which gives "
                    f"{value.shape} in Flax's layout; the model expects {tuple(leaf.shape)}"
                )
            out[leaf_path] = np.asarray(value, dtype=leaf.dtype)
            used.add(key)
        loaded[collection] = traverse_util.unflatten_dict(out)
    unused = sorted(
        k
        for k in set(state) - used
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    )
    if unused:
        raise ValueError(
            f"{path}: unexpected keys {unused[:5]}{' ...' if len(unused) > 5 else ''} "
            "(a different ResNet depth or width?)"
        )
    return loaded
