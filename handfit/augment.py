"""Self-supervised data augmentation (paper Sec. 3.5): predicted hands re-rendered as new examples.

For each predicted ("seed") hand of a batch, :func:`generate` makes ``per_seed`` new
training examples, all inside one compiled function (pure jnp, batched):

1. **Texture.** The seed mesh is placed in its crop's camera and rasterised
   (``handfit.render.rasterize``). A vertex is *visible* when its projection lies in
   the crop and either the face drawn at its pixel is one of the vertex's faces, or
   the pixel is covered and the vertex is at most ``vertex_tolerance`` (metres, times
   the seed's scale) behind the z-buffer there. Visible vertices take the seed
   image's colour at their projection (bilinear); every other vertex takes the
   colour of the nearest visible vertex on the hand model's template (distances on
   the rest hand, so the fill follows the skin, not the pose). A seed with no
   visible vertex is coloured with its image's mean colour.
2. **New hands.** Shape ``beta ~ U(-shape_range, shape_range)`` per dimension;
   a rotation ``R_z R_y R_x`` with each angle uniform in ``+-rotation_deg``, in
   camera axes, composed with the seed's rotation about the hand's root (the
   middle MCP), so the root stays where the seed put it in the crop. Pose, scale
   and translation are the seed's (the paper does not resample poses).
3. **Render.** ``handfit.render.shade`` (vertex colours, ambient + Lambert with the
   light at the camera, soft alpha edges) in the seed's crop camera, composited on
   a background (``handfit.render.composite``): procedural ones drawn in jnp from
   the key (``handfit.data.backgrounds.procedural_jax``), or images drawn on the
   host and passed in (``handfit.data.backgrounds.draw``).
4. **Labels,** as the input pipeline gives them (``handfit.data.pipeline.process``):
   ``mask`` is the rendered alpha thresholded at 0.5 (the hard raster mask plus the
   soft edge's pixels above one half); ``joints3d`` the new mesh's 21 joints in
   camera space; a joint is ``visible`` when it projects inside the crop onto a
   pixel the mesh covers, at most ``joint_tolerance`` (metres, times the scale)
   behind the surface drawn there (joints lie inside the skin; the synthetic
   dataset uses the same rule); as in the pipeline, hidden joints have
   ``joints2d = 0`` and empty heat maps; heat maps come from the pipeline's own
   formula; ``norm_size`` is ``crop_scale`` x the larger side of the visible (else
   all) joints' tight 2D box, as in the pipeline.

Generated example ``b * per_seed + j`` comes from seed ``b``. Nothing here is
differentiated: the inputs are wrapped in ``stop_gradient``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit import defaults, geometry, mano, params
from handfit import render as rnd
from handfit.data import backgrounds as bg
from handfit.data import pipeline

Array = jax.Array


# configs/default.py's sections that AugmentConfig's defaults come from.
AUGMENT, DATA = defaults.section("augment"), defaults.section("data")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How examples are generated (hashable: a static argument of :func:`generate`).

    per_seed: new examples per seed hand.
    shape_range: beta ~ U(-shape_range, shape_range) per shape dimension.
    rotation_deg: (x, y, z) limits of the extra rotation about each camera axis, degrees.
    ambient, diffuse: shading of the re-rendered texture (light at the camera); the
      seed's colours already hold its lighting, so the default adds little.
    vertex_tolerance: metres (times the seed's scale) a vertex may lie behind the z-buffer
      and still count as visible when its colour is read.
    joint_tolerance: the same for a joint of the generated hand to count as visible.
    crop_scale: Eq. 8's c over the joints' box side (the pipeline's ``crop_scale``).
    heatmap_size, heatmap_sigma: the pipeline's heat maps (cells; sigma in cells).

    Each default is configs/default.py's field of the same name (``handfit.defaults``):
    ``config.augment``'s, and ``config.data``'s for the last three.
    """

    per_seed: int = AUGMENT.per_seed
    shape_range: float = AUGMENT.shape_range
    rotation_deg: tuple[float, float, float] = AUGMENT.rotation_deg
    ambient: float = AUGMENT.ambient
    diffuse: float = AUGMENT.diffuse
    vertex_tolerance: float = AUGMENT.vertex_tolerance
    joint_tolerance: float = AUGMENT.joint_tolerance
    crop_scale: float = DATA.crop_scale
    heatmap_size: int = DATA.heatmap_size
    heatmap_sigma: float = DATA.heatmap_sigma

    def __post_init__(self):
        if self.per_seed < 1:
            raise ValueError(f"augment.per_seed must be >= 1, got {self.per_seed}")
        if self.shape_range < 0:
            raise ValueError(f"augment.shape_range must be >= 0, got {self.shape_range}")
        if len(self.rotation_deg) != 3:
            raise ValueError(
                f"augment.rotation_deg must be 3 angles (x, y, z) in degrees, "
                f"got {self.rotation_deg!r}"
            )

    @classmethod
    def from_config(cls, augment: Mapping, data: Mapping) -> AugmentConfig:
        """From ``config.augment`` and ``config.data`` (the heat maps and the crop scale):
        their fields that are AugmentConfig's (the others are the training loop's)."""
        return defaults.build(cls, augment, data)


class Augmented(NamedTuple):
    """What :func:`generate` returns; N = B * per_seed generated examples.

    batch: dict with the keys, shapes and dtypes of ``pipeline.process`` stacked over N
      (image [N, S, S, 3], mask [N, S, S], has_mask [N], K [N, 3, 3], joints3d [N, 21, 3],
      joints2d [N, 21, 2], visible [N, 21], heatmaps [N, 21, hs, hs], norm_size [N],
      mirrored [N]).
    params: the generated hands' MeshParams [N].
    colors: [N, V, 3] their vertex colours (albedo) read from the seed images.
    alpha: [N, S, S] the rendered alpha the images were composited with.
    overflow: [N] int32 overflow of ``shade`` (0: nothing dropped).
    """

    batch: dict[str, Array]
    params: params.MeshParams
    colors: Array
    alpha: Array
    overflow: Array


def _at_pixels(uv: Array, image: Array) -> tuple[Array, Array, Array]:
    """Pixel (row, col) under points ``uv [B, N, 2]`` and whether they are inside ``[B, H, W]``."""
    h, w = image.shape[1:3]
    col = jnp.floor(uv[..., 0]).astype(jnp.int32)
    row = jnp.floor(uv[..., 1]).astype(jnp.int32)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    return jnp.clip(row, 0, h - 1), jnp.clip(col, 0, w - 1), inside


def _gather(image: Array, row: Array, col: Array) -> Array:
    """``image [B, H, W, ...]`` at pixels ``row, col [B, N]``: [B, N, ...]."""
    return jax.vmap(lambda im, r, c: im[r, c])(image, row, col)


def _unoccluded(
    uv: Array, depth: Array, frags: rnd.Fragments, tolerance: Array, near: float
) -> Array:
    """[B, N] points past ``near``, inside the image on a covered pixel, at most
    ``tolerance [B]`` behind the depth drawn there."""
    row, col, inside = _at_pixels(uv, frags.mask)
    covered = _gather(frags.mask, row, col) > 0
    front = _gather(frags.depth, row, col)
    return (depth > near) & inside & covered & (depth - front <= tolerance[:, None])


@jax.jit
def vertex_colors(
    vertices: Array,
    faces: Array,
    template: Array,
    images: Array,
    camera: rnd.Camera,
    *,
    tolerance: Array | float,
) -> tuple[Array, Array]:
    """Per-vertex colours read from images at the visible projected vertices.

    Args:
      vertices: [B, V, 3] meshes in the images' camera space.
      faces: [F, 3] int vertex ids.
      template: [V, 3] the hand model's rest vertices; invisible vertices take the colour
        of the nearest visible vertex there.
      images: [B, H, W, 3] in [0, 1].
      camera: the images' camera, fields [] or [B].
      tolerance: [] or [B], how far (camera units) a vertex may lie behind the z-buffer
        and still be visible (when the face drawn at its pixel is not one of its own).
    Returns:
      ``(colors [B, V, 3], visible [B, V] bool)``; a mesh with no visible vertex takes its
      image's mean colour everywhere.
    """
    b, v = vertices.shape[:2]
    frags = rnd.rasterize(vertices, faces, camera)
    uv, depth = rnd.project_with_depth(vertices, camera)
    tolerance = jnp.broadcast_to(jnp.asarray(tolerance, vertices.dtype), (b,))
    row, col, inside = _at_pixels(uv, frags.mask)
    fid = _gather(frags.face_id, row, col)  # [B, V]
    own_face = (fid >= 0) & jnp.any(faces[jnp.maximum(fid, 0)] == jnp.arange(v)[:, None], -1)
    in_front = inside & (depth > camera.near)
    visible = in_front & (own_face | _unoccluded(uv, depth, frags, tolerance, camera.near))

    def bilinear(image, points):  # [H, W, 3], [V, 2] -> [V, 3]
        coords = [points[:, 1] - 0.5, points[:, 0] - 0.5]  # array indices of pixel centres
        return jnp.stack(
            [
                jax.scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest")
                for c in range(3)
            ],
            -1,
        )

    sampled = jax.vmap(bilinear)(images, uv)
    dist = jnp.sum((template[:, None] - template[None]) ** 2, -1)  # [V, V]
    nearest = jnp.argmin(jnp.where(visible[:, None, :], dist[None], jnp.inf), -1)  # [B, V]
    filled = jnp.take_along_axis(sampled, nearest[..., None], axis=1)
    colors = jnp.where(visible[..., None], sampled, filled)
    mean = jnp.broadcast_to(images.mean((1, 2))[:, None], colors.shape)
    colors = jnp.where(jnp.any(visible, -1)[:, None, None], colors, mean)
    return jnp.clip(colors, 0.0, 1.0), visible


@functools.partial(jax.jit, static_argnames=("config",))
def generate(
    seeds: params.MeshParams,
    images: Array,
    K: Array,
    *,
    key: Array,
    model: mano.HandModel,
    config: AugmentConfig,
    backgrounds: Array | None = None,
    base_translation: Array | tuple[float, float, float] = params.BASE_TRANSLATION,
) -> Augmented:
    """New training examples from predicted hands (paper Sec. 3.5); see the module docstring.

    Args:
      seeds: the predicted hands, MeshParams [B] (e.g. the DHPE's last iteration).
      images: [B, S, S, 3] the seeds' crops in [0, 1].
      K: [B, 3, 3] the crops' intrinsics (the batch's ``K``).
      key: PRNG key.
      model: the hand model the seeds were predicted with.
      config: an :class:`AugmentConfig` (static).
      backgrounds: [B * per_seed, S, S, 3] in [0, 1], or None for procedural ones drawn
        from ``key``. Example ``b * per_seed + j`` uses background ``b * per_seed + j``.
      base_translation: [3] or [B, 3], where the seeds' ``trans = 0`` puts the middle MCP
        (``params.mesh``; a DHPE's seeds: ``params.crop_base_translation(K, S)``). The
        generated hands' parameters use the same base.
    Returns:
      :class:`Augmented`: ``batch`` holds B * per_seed examples with the keys, shapes and
      dtypes of ``pipeline.process``, ready to concatenate with the real batch.
    """
    b, s = images.shape[0], images.shape[1]
    n = b * config.per_seed
    _check_generate_inputs(seeds, images, K, backgrounds, config.per_seed)
    seeds, images, K = jax.lax.stop_gradient((seeds, images.astype(jnp.float32), K))
    base = jnp.broadcast_to(jnp.asarray(base_translation, jnp.float32), (b, 3))
    scale = params.metric_scale(seeds)  # [B]

    # 1. Texture from the seed image.
    colors = _seed_colors(seeds, images, K, base, model, config.vertex_tolerance * scale)

    # 2. New shapes and rotations about the root; pose, scale and translation kept.
    k_shape, k_rot, k_bg = jax.random.split(key, 3)
    new = _new_hands(seeds, k_shape, k_rot, config)
    repeat = functools.partial(_per_seed, k=config.per_seed)
    mesh = params.mesh(new, model, base_translation=repeat(base))

    # 3. Render and composite.
    camera = rnd.crop_camera(repeat(K), s)
    colors = repeat(colors)
    shaded = rnd.shade(
        mesh.vertices, model.faces, colors, camera, ambient=config.ambient, diffuse=config.diffuse
    )
    if backgrounds is None:
        backgrounds = bg.procedural_jax(k_bg, n, s)
    image = rnd.composite(shaded, backgrounds)

    # 4. Labels.
    tolerance = config.joint_tolerance * repeat(scale)
    batch = _batch(image, shaded.alpha, repeat(K), mesh, model.faces, camera, tolerance, config)
    return Augmented(batch, new, colors, shaded.alpha, shaded.overflow)


def _check_generate_inputs(
    seeds: params.MeshParams, images: Array, K: Array, backgrounds: Array | None, per_seed: int
) -> None:
    """Raises naming the argument of :func:`generate` whose shape does not fit the others."""
    b, s = images.shape[0], images.shape[1]
    n = b * per_seed
    if images.shape != (b, s, s, 3):
        raise ValueError(f"augment: images must be [B, S, S, 3] square crops, got {images.shape}")
    if K.shape != (b, 3, 3):
        raise ValueError(f"augment: K must be [{b}, 3, 3], got {K.shape}")
    if seeds.pose.shape[0] != b:
        raise ValueError(f"augment: {seeds.pose.shape[0]} seed hands for {b} images")
    if backgrounds is not None and backgrounds.shape != (n, s, s, 3):
        raise ValueError(
            f"augment: backgrounds must be [B * per_seed, S, S, 3] = [{n}, {s}, {s}, 3], "
            f"got {backgrounds.shape}"
        )


def _seed_colors(
    seeds: params.MeshParams,
    images: Array,
    K: Array,
    base: Array,
    model: mano.HandModel,
    tolerance: Array,
) -> Array:
    """[B, V, 3] the seed hands' vertex colours read from their crops ``images`` [B, S, S, 3]
    (intrinsics ``K`` [B, 3, 3], placed from ``base`` [B, 3]; ``tolerance`` [B], see
    :func:`vertex_colors`)."""
    camera = rnd.crop_camera(K, images.shape[1])
    seed_mesh = params.mesh(seeds, model, base_translation=base)
    colors, _ = vertex_colors(
        seed_mesh.vertices, model.faces, model.v_template, images, camera, tolerance=tolerance
    )
    return colors


def _per_seed(x: Array, k: int) -> Array:
    """``x`` [B, ...] with each seed's row repeated ``k`` times: [B * k, ...]."""
    return jnp.repeat(x, k, axis=0)


def _new_hands(
    seeds: params.MeshParams, k_shape: Array, k_rot: Array, config: AugmentConfig
) -> params.MeshParams:
    """[B * per_seed] new hands: each seed's pose, scale and root position, with a shape
    drawn from ``k_shape`` and the seed's rotation turned about camera axes by ``k_rot``."""
    b, k = seeds.pose.shape[0], config.per_seed
    n = b * k
    num_betas = seeds.shape.shape[-1]
    shape = config.shape_range * jax.random.uniform(
        k_shape, (n, num_betas), minval=-1.0, maxval=1.0
    )
    turn = geometry.random_rotations(k_rot, config.rotation_deg, (b, k))  # [B, k, 3, 3]
    rot = (turn @ params.rotation(seeds)[:, None]).reshape(n, 3, 3)
    repeated = jax.tree.map(functools.partial(_per_seed, k=k), seeds)
    return repeated._replace(shape=shape, quat=params.encode_rotation(rot))


def _batch(
    image: Array,
    alpha: Array,
    K: Array,
    mesh: params.Placed,
    faces: Array,
    camera: rnd.Camera,
    tolerance: Array,
    config: AugmentConfig,
) -> dict[str, Array]:
    """The N generated examples as ``pipeline.process``'s batch (module docstring, 4.).

    image: [N, S, S, 3] composited; alpha: [N, S, S] rendered alpha; K: [N, 3, 3];
    mesh: the N hands in camera space; faces: [F, 3]; camera: the crops' camera [N];
    tolerance: [N] how far (camera units) a joint may lie behind the surface and be visible.
    """
    n, s = image.shape[0], image.shape[1]
    frags = rnd.rasterize(mesh.vertices, faces, camera)
    uv, depth = rnd.project_with_depth(mesh.joints, camera)
    visible = _unoccluded(uv, depth, frags, tolerance, camera.near)
    joints2d = jnp.where(visible[..., None], uv, 0.0)
    # The visible (else all) joints' box, as the pipeline's norm_size (pipeline.tight_box).
    box = geometry.tight_box(uv, jnp.where(jnp.any(visible, -1, keepdims=True), visible, True))
    box_side = jnp.max(box[:, 2:] - box[:, :2], -1)
    maps = jax.vmap(
        functools.partial(
            pipeline.heatmaps,
            image_size=s,
            heatmap_size=config.heatmap_size,
            sigma=config.heatmap_sigma,
            xp=jnp,
        )
    )(joints2d, visible)
    return {
        "image": image.astype(jnp.float32),
        "mask": (alpha > 0.5).astype(jnp.float32),
        "has_mask": jnp.ones((n,), bool),
        "K": K.astype(jnp.float32),
        "joints3d": mesh.joints.astype(jnp.float32),
        "joints2d": joints2d.astype(jnp.float32),
        "visible": visible,
        "heatmaps": maps,
        "norm_size": (config.crop_scale * box_side).astype(jnp.float32),
        "mirrored": jnp.zeros((n,), bool),
    }


def extend(batch: dict[str, Array], generated: dict[str, Array]) -> dict[str, Array]:
    """The real batch followed by generated examples (``Augmented.batch``), key by key.

    Both must hold exactly the keys of ``pipeline.process`` (``pipeline.BATCH_KEYS``) with
    matching per-example shapes; the result has N_real + N_generated examples.
    """
    for name, value in (("batch", batch), ("generated", generated)):
        if set(value) != set(pipeline.BATCH_KEYS):
            raise ValueError(
                f"augment.extend: {name} has keys {sorted(value)}, "
                f"expected {sorted(pipeline.BATCH_KEYS)}"
            )
    out = {}
    for key in pipeline.BATCH_KEYS:
        a, g = batch[key], generated[key]
        if a.shape[1:] != g.shape[1:]:
            raise ValueError(
                f"augment.extend: '{key}' is {a.shape[1:]} per real example but "
                f"{g.shape[1:]} per generated one"
            )
        out[key] = jnp.concatenate([jnp.asarray(a), jnp.asarray(g).astype(a.dtype)])
    return out
