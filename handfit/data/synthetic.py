"""The synthetic hand dataset, handfit's built-in default: hands rendered by handfit itself.

Each example: a pose within the hand model's joint limits (``mano.sample_poses``;
MANO's PCA space for MANO files), a shape ``beta ~ N(0, shape_std^2)``, a global
rotation of up to ``rotation_deg`` about each axis, a depth and an image position
such that the hand fills about ``fill`` of the image, skin-like vertex colours
with ambient + Lambertian shading (``handfit.render.texture``), a random
background (procedural, or from a folder of images) and optional occluders.
Records have the TFDS builders' features (``handfit.data.builders``) plus the
hand's parameters and vertices. Example ``i`` of a split depends only on the
spec, the split's seed and ``i``: generation is deterministic and can be
chunked or parallelised freely.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from handfit import geometry, mano
from handfit.data import backgrounds
from handfit.render import camera as cam
from handfit.render import raster, texture

# Skin tones (sRGB in [0, 1]) from light to dark; each hand mixes two neighbours.
SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.91, 0.72, 0.60],
        [0.82, 0.60, 0.47],
        [0.71, 0.49, 0.36],
        [0.55, 0.37, 0.26],
        [0.40, 0.26, 0.18],
    ],
    np.float32,
)
SPLIT_SEEDS = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What the synthetic dataset holds; a different spec is a different dataset version."""

    num_train: int = 2000
    num_test: int = 200
    image_size: int = 128
    focal: float = 2.0  # focal length in units of the image size
    fill: float = 0.75  # the hand's larger 2D extent over the image size, on average
    rotation_deg: tuple[float, float, float] = (180.0, 180.0, 180.0)  # about x, y, z
    shape_std: float = 1.0
    occluder_prob: float = 0.3
    background_dir: str = ""  # '' for procedural backgrounds
    hand_model: str = ""  # a MANO file, or '' for the open hand model
    seed: int = 0
    # The test split's own ranges (None: the training split's); wider ones test how a
    # model generalises beyond the shapes and viewpoints it was trained on.
    test_rotation_deg: tuple[float, float, float] | None = None
    test_shape_std: float | None = None

    @property
    def name(self) -> str:
        """A short stable name: the TFDS builder config and its folder."""
        digest = hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        return f"s{self.image_size}_{digest.hexdigest()[:10]}"

    def num(self, split: str) -> int:
        return {"train": self.num_train, "test": self.num_test}[split]

    def sampling(self, split: str) -> SyntheticSpec:
        """The spec whose ``rotation_deg`` and ``shape_std`` are those ``split`` is drawn with."""
        if split != "test":
            return self
        return dataclasses.replace(
            self,
            rotation_deg=self.test_rotation_deg or self.rotation_deg,
            shape_std=self.shape_std if self.test_shape_std is None else self.test_shape_std,
        )


@functools.partial(jax.jit, static_argnames=("spec", "n"))
def _sample_hands(key: jax.Array, model: mano.HandModel, spec: SyntheticSpec, n: int):
    """Poses, shapes and camera-space meshes of ``n`` hands that fill the image."""
    k_pose, k_shape, k_rot, k_depth, k_pos, k_col = jax.random.split(key, 6)
    pose = mano.sample_poses(k_pose, model, n)
    shape = spec.shape_std * jax.random.normal(k_shape, (n, model.num_betas))
    out = mano.forward(model, pose, shape)
    rot = geometry.random_rotations(k_rot, spec.rotation_deg, (n,))
    centre = out.vertices.mean(1, keepdims=True)
    verts = jnp.einsum("nij,nvj->nvi", rot, out.vertices - centre)
    joints = jnp.einsum("nij,nvj->nvi", rot, out.joints - centre)
    # depth so that the hand's larger extent covers ~fill of the image (+-15 %)
    extent = jnp.max(verts[..., :2].max(1) - verts[..., :2].min(1), -1)
    fill = spec.fill * jax.random.uniform(k_depth, (n,), minval=0.85, maxval=1.15)
    depth = spec.focal * extent / fill + 0.5 * (verts[..., 2].max(1) - verts[..., 2].min(1))
    # a random position that keeps the 2D box inside the image
    margin = jnp.clip(1.0 - fill, 0.0, 1.0) / 2
    offset = jax.random.uniform(k_pos, (n, 2), minval=-1.0, maxval=1.0) * margin[:, None]
    shift = jnp.concatenate([offset * depth[:, None] / spec.focal, depth[:, None]], -1)
    verts = verts + shift[:, None]
    joints = joints + shift[:, None]
    k_tone, k_mix, k_var = jax.random.split(k_col, 3)
    tone = jax.random.randint(k_tone, (n,), 0, len(SKIN_TONES) - 1)
    mix = jax.random.uniform(k_mix, (n, 1))
    tones = jnp.asarray(SKIN_TONES)
    base = tones[tone] * (1 - mix) + tones[tone + 1] * mix  # [n, 3]
    # low-frequency colour variation over the skin, a few per cent
    freq = jax.random.normal(k_var, (n, 3, 3)) * 40.0
    wave = jnp.sin(jnp.einsum("nvc,nkc->nvk", out.vertices, freq))  # [n, V, 3]
    colors = jnp.clip(base[:, None] * (1.0 + 0.06 * wave), 0.0, 1.0)
    global_rot = geometry.matrix_to_axis_angle(rot)
    return pose, shape, global_rot, verts, joints, colors


def _camera(spec: SyntheticSpec) -> cam.Camera:
    size = spec.image_size
    f = spec.focal * size
    return cam.perspective_camera(f, f, size / 2, size / 2, size, size)


def intrinsics(spec: SyntheticSpec) -> np.ndarray:
    """``[3, 3]`` K of every synthetic image."""
    size = spec.image_size
    f = spec.focal * size
    return np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], np.float32)


@functools.partial(jax.jit, static_argnames=("spec",))
def _render(model: mano.HandModel, verts, colors, light_key, spec: SyntheticSpec):
    camera = cam.batch_camera(_camera(spec), verts.shape[0])
    light = jax.vmap(lambda k: jax.random.normal(k, (3,)))(light_key) * 0.5 + jnp.array(
        [0.0, -0.3, 1.0]
    )
    light = light / jnp.linalg.norm(light, axis=-1, keepdims=True)
    shaded = texture.shade(verts, model.faces, colors, camera, light_dir=light)
    frags = raster.rasterize(verts, model.faces, camera)
    return shaded.rgb, shaded.alpha, frags.depth, frags.mask


def _visibility(joints2d, joints3d, depth, mask, tolerance=0.025):
    """A joint is visible where the skin in front of it is within ``tolerance`` metres."""
    size = depth.shape[0]
    cols = np.clip(np.floor(joints2d[:, 0]).astype(int), 0, size - 1)
    rows = np.clip(np.floor(joints2d[:, 1]).astype(int), 0, size - 1)
    inside = (joints2d >= 0).all(-1) & (joints2d < size).all(-1)
    front = depth[rows, cols]
    return inside & (mask[rows, cols] > 0) & (joints3d[:, 2] - front < tolerance)


def _occlude(rng: np.random.Generator, image, mask, joints2d):
    """Pastes one random ellipse of a random colour over part of the hand."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centre = joints2d[int(rng.integers(len(joints2d)))] + rng.normal(0, 0.1 * size, 2)
    radii = rng.uniform(0.08, 0.2, 2) * size
    angle = rng.uniform(0, np.pi)
    dx, dy = xx - centre[0], yy - centre[1]
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radii[0]
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / radii[1]
    occluder = u**2 + v**2 < 1.0
    image = np.where(occluder[..., None], rng.random(3) * 0.8 + 0.1, image)
    return image, mask & ~occluder, occluder


def generate(
    spec: SyntheticSpec, split: str, start: int, count: int, model: mano.HandModel | None = None
) -> list[dict]:
    """Records ``start .. start + count - 1`` of ``split`` ('train' or 'test').

    Each record: image uint8 [S, S, 3], mask uint8 [S, S, 1], K [3, 3], joints3d [21, 3]
    (metres), joints2d [21, 2], visible [21], side 1 (right), joint0 'wrist', sample_id,
    mano_pose [48] (global axis-angle + 45, flat hand mean), mano_shape [n_betas],
    vertices [V, 3].
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"synthetic split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    model = model or mano.get_model(spec.hand_model, "right")
    sampling = spec.sampling(split)
    base = jax.random.fold_in(jax.random.key(spec.seed), SPLIT_SEEDS[split])
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(start, start + count))
    hand_keys, light_keys = jax.vmap(lambda k: jax.random.split(k))(keys).transpose(1, 0)
    # one hand per key so that example i does not depend on the chunking
    sample = jax.vmap(
        lambda k: jax.tree_util.tree_map(lambda a: a[0], _sample_hands(k, model, sampling, 1))
    )
    pose, shape, global_rot, verts, joints, colors = sample(hand_keys)
    rgb, alpha, depth, hard = _render(model, verts, colors, light_keys, spec)
    rgb, alpha, depth, hard = map(np.asarray, (rgb, alpha, depth, hard))
    K = intrinsics(spec)
    joints = np.asarray(joints)
    proj = joints @ K.T
    joints2d = (proj[..., :2] / proj[..., 2:]).astype(np.float32)
    draw_background = backgrounds.source(spec.background_dir)
    records = []
    for b in range(count):
        index = start + b
        rng = np.random.default_rng([spec.seed, SPLIT_SEEDS[split], index])
        bg = draw_background(rng, spec.image_size)
        image = alpha[b, ..., None] * rgb[b] + (1 - alpha[b, ..., None]) * bg
        mask = hard[b] > 0
        visible = _visibility(joints2d[b], joints[b], depth[b], mask)
        if rng.random() < spec.occluder_prob:
            image, mask, occluder = _occlude(rng, image, mask, joints2d[b])
            cols = np.clip(joints2d[b, :, 0].astype(int), 0, spec.image_size - 1)
            rows = np.clip(joints2d[b, :, 1].astype(int), 0, spec.image_size - 1)
            visible &= ~occluder[rows, cols]
        records.append(
            {
                "image": np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8),
                "mask": mask.astype(np.uint8)[..., None],
                "K": K,
                "joints3d": joints[b].astype(np.float32),
                "joints2d": joints2d[b],
                "visible": visible,
                "side": 1,
                "joint0": "wrist",
                "sample_id": f"{split}/{index:06d}",
                "mano_pose": np.concatenate(
                    [np.asarray(global_rot[b]), np.asarray(pose[b])]
                ).astype(np.float32),
                "mano_shape": np.asarray(shape[b], np.float32),
                "vertices": np.asarray(verts[b], np.float32),
            }
        )
    return records
