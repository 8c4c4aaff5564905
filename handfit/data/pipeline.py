"""The input pipeline: hand crops with consistent joints, masks and intrinsics, then batches.

Each example is cropped to a square around its 2D joints (side ``crop_scale`` x the
tight box, 1.5 as in the paper's Eq. 8), resized to ``image_size`` and given
ground-truth heat maps. Every geometric change is one exact homography of the
source image, so the crop's intrinsics ``K`` project the new 3D joints onto the new
2D joints for any camera:

- mirroring (left hands to right ones) reflects the points, ``X' = M X`` with
  ``M = diag(-1, 1, 1)``, seen by the mirrored camera ``F K M`` (``F`` flips the
  image: ``u' = W - u``, as ``handfit.data.example.mirror``);
- in-plane rotation (augmentation) turns the points about the optical axis,
  ``X' = R_z X``: an exact camera rotation for a perspective camera;
- the crop and resize map pixels by ``A = [[s, 0, -s x0], [0, s, -s y0], [0, 0, 1]]``
  (continuous pixel coordinates, pixel centres at +0.5), so ``K_crop = A K``.

The source pixel ``u`` goes to ``A K_v R M K^-1 u`` in the crop; images are
resampled bilinearly through its inverse. Training adds scale, translation and
rotation jitter of the crop and colour jitter. Batches are dicts of numpy arrays
with fixed shapes (see :func:`process`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from handfit import geometry
from handfit.data import example

MIRROR = np.diag([-1.0, 1.0, 1.0])
# The keys of an example (:func:`process`), in its order: the batch schema of training.
BATCH_KEYS = (
    "image",
    "mask",
    "has_mask",
    "K",
    "joints3d",
    "joints2d",
    "visible",
    "heatmaps",
    "norm_size",
    "mirrored",
)


def tight_box(joints2d: np.ndarray, visible: np.ndarray, where: str = "example") -> np.ndarray:
    """``(u_min, v_min, u_max, v_max)`` of the visible (else all labelled) 2D joints ``[21, 2]``
    (``geometry.tight_box``); raises naming ``where`` when no joint is labelled."""
    finite = np.isfinite(joints2d).all(-1)
    use = finite & visible
    if not use.any():
        use = finite
    if not use.any():
        raise ValueError(f"{where}: no labelled 2D joint to place a crop around")
    return geometry.tight_box(joints2d, use)


def crop_matrix(center: np.ndarray, side: float, out_size: int) -> np.ndarray:
    """``[3, 3]`` map from source pixels to a square crop of ``side`` at ``center``, resized."""
    s = out_size / side
    x0, y0 = center[0] - side / 2, center[1] - side / 2
    return np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0], [0.0, 0.0, 1.0]])


def rotation_z(angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` radians about the optical axis (image clockwise)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def warp(image: np.ndarray, homography: np.ndarray, out_size: int) -> np.ndarray:
    """Resamples ``image [H, W, C]`` (or ``[H, W]``) so that source pixel u lands at ``H u``.

    Output ``[out_size, out_size, C]`` float32, bilinear; a sample outside the source's
    pixel centres (``[0, W - 1] x [0, H - 1]`` in array indices) is 0, as
    ``scipy.ndimage.map_coordinates(order=1, mode='constant')``. All channels share one
    set of sample positions (one gather per corner).
    """
    inv = np.linalg.inv(homography)
    c = np.arange(out_size, dtype=np.float64) + 0.5  # crop pixel centres
    u, v = c[None, :], c[:, None]
    z = inv[2, 0] * u + inv[2, 1] * v + inv[2, 2]
    x = ((inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]) / z - 0.5).ravel()  # array indices
    y = ((inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]) / z - 0.5).ravel()
    img = image[..., None] if image.ndim == 2 else image
    h, w = img.shape[:2]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x0 = np.clip(np.floor(x), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y), 0, max(h - 2, 0))
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    flat = img.reshape(h * w, img.shape[-1]).astype(np.float32, copy=False)
    i00 = y0.astype(np.intp) * w + x0.astype(np.intp)
    dx, dy = int(w > 1), w * int(h > 1)  # the next column and row (none in a 1-pixel side)
    top = flat[i00]
    top += (flat[i00 + dx] - top) * fx
    bottom = flat[i00 + dy]
    bottom += (flat[i00 + dy + dx] - bottom) * fx
    top += (bottom - top) * fy
    top *= inside[:, None]
    out = top.reshape(out_size, out_size, img.shape[-1])
    return out[..., 0] if image.ndim == 2 else out


def heatmaps(
    joints2d: np.ndarray,
    visible: np.ndarray,
    *,
    image_size: int,
    heatmap_size: int,
    sigma: float,
    xp=np,
) -> np.ndarray:
    """Gaussian heat maps ``[21, hs, hs]`` (peak 1) of crop joints ``[21, 2]``; 0 where not visible.

    Cell (i, j) covers crop pixels ``[j s, (j + 1) s)`` with ``s = image_size / heatmap_size``;
    ``sigma`` is in cells. ``xp`` is the array module: ``numpy`` here, ``jax.numpy`` for
    examples made inside a jitted step (``handfit.augment``), so both share one formula.
    """
    ok = visible & xp.isfinite(joints2d).all(-1)
    # continuous heat-map coordinates; a joint that is not drawn is put at 0, then zeroed
    cells = xp.where(ok[:, None], joints2d, 0.0) / (image_size / heatmap_size)
    centres = xp.arange(heatmap_size) + 0.5
    # separable: exp(-(du^2 + dv^2) / 2s^2) = exp(-du^2 / 2s^2) exp(-dv^2 / 2s^2)
    gu = xp.exp(-xp.square(centres[None, :] - cells[:, 0, None]) / (2 * sigma**2))
    gv = xp.exp(-xp.square(centres[None, :] - cells[:, 1, None]) / (2 * sigma**2))
    gu = xp.where(ok[:, None], gu, 0.0)
    return (gv[:, :, None] * gu[:, None, :]).astype(xp.float32)


def _color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast and saturation jitter of ``image [H, W, 3]`` in [0, 1]."""
    brightness = 1.0 + rng.uniform(-strength, strength)
    contrast = 1.0 + rng.uniform(-strength, strength)
    saturation = 1.0 + rng.uniform(-strength, strength)
    image = image * brightness
    mean = image.mean()
    image = (image - mean) * contrast + mean
    gray = image.mean(-1, keepdims=True)
    image = (image - gray) * saturation + gray
    return np.clip(image, 0.0, 1.0)


def process(
    record: Mapping[str, Any],
    rng: np.random.Generator | None,
    *,
    image_size: int = 224,
    heatmap_size: int = 32,
    heatmap_sigma: float = 1.0,
    crop_scale: float = 1.5,
    mirror_left: bool = True,
    scale_jitter: float = 0.0,
    translate_jitter: float = 0.0,
    rotation_deg: float = 0.0,
    color_jitter: float = 0.0,
) -> dict[str, np.ndarray]:
    """One dataset record (the TFDS builders' features) to one training/evaluation example.

    A record without ``side`` is a right hand (``example.is_left`` reads it). With
    ``rng=None`` nothing is random (evaluation). Returns :data:`BATCH_KEYS`, S = ``image_size``:
      image float32 [S, S, 3] in [0, 1]; mask float32 [S, S] in {0, 1}; has_mask bool [];
      K float32 [3, 3] of the crop; joints3d float32 [21, 3] metres (camera frame of the
      crop: mirrored/rotated as the image); joints2d float32 [21, 2] crop pixels;
      visible bool [21] (False for unlabelled joints, whose coordinates are 0);
      heatmaps float32 [21, hs, hs]; norm_size float32 [] (Eq. 8's c: ``crop_scale`` x
      the larger side of the joints' tight box, crop pixels); mirrored bool [].
    """
    where = str(record.get("sample_id", "example"))
    image = np.asarray(record["image"])
    height, width = image.shape[:2]
    K = np.asarray(record["K"], np.float64)
    joints3d = np.asarray(record["joints3d"], np.float64)
    visible = np.asarray(record["visible"], bool) & np.isfinite(joints3d).all(-1)
    mirrored = mirror_left and example.is_left(record.get("side", example.RIGHT), where)

    # The virtual camera and the moved points.
    flip = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    k_virtual = flip @ K @ MIRROR if mirrored else K
    angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg)) if rng is not None else 0.0
    motion = rotation_z(angle) @ (MIRROR if mirrored else np.eye(3))
    points = joints3d @ motion.T
    proj = points @ k_virtual.T
    uv = proj[:, :2] / proj[:, 2:3]

    box = tight_box(uv, visible, where)
    extent = (box[2:] - box[:2]).max()
    side = max(crop_scale * extent, 1.0)
    center = (box[:2] + box[2:]) / 2
    if rng is not None:
        side *= 1.0 + rng.uniform(-scale_jitter, scale_jitter)
        center = center + rng.uniform(-translate_jitter, translate_jitter, 2) * side
    crop = crop_matrix(center, side, image_size)
    k_crop = crop @ k_virtual
    homography = k_crop @ motion @ np.linalg.inv(K)

    has_mask = "mask" in record and bool(record.get("has_mask", True))
    layers = [image.astype(np.float32) / 255.0]
    if has_mask:  # the mask as a fourth channel: one warp for both
        mask = np.asarray(record["mask"])
        layers.append((mask[..., 0] if mask.ndim == 3 else mask).astype(np.float32)[..., None])
    warped = warp(np.concatenate(layers, -1) if has_mask else layers[0], homography, image_size)
    out_image = warped[..., :3]
    if rng is not None and color_jitter > 0:
        out_image = _color_jitter(out_image, rng, color_jitter)
    if has_mask:
        out_mask = (warped[..., 3] > 0.5).astype(np.float32)
    else:
        out_mask = np.zeros((image_size, image_size), np.float32)

    joints2d = (uv - center + side / 2) * (image_size / side)
    joints2d = np.where(visible[:, None], joints2d, 0.0)
    points = np.where(np.isfinite(points), points, 0.0)
    return {
        "image": out_image.astype(np.float32),
        "mask": out_mask,
        "has_mask": np.bool_(has_mask),
        "K": k_crop.astype(np.float32),
        "joints3d": points.astype(np.float32),
        "joints2d": joints2d.astype(np.float32),
        "visible": visible,
        "heatmaps": heatmaps(
            joints2d, visible, image_size=image_size, heatmap_size=heatmap_size, sigma=heatmap_sigma
        ),
        "norm_size": np.float32(crop_scale * extent * image_size / side),
        "mirrored": np.bool_(mirrored),
    }


def options(data_config) -> dict[str, Any]:
    """:func:`process` keyword arguments from a config's ``data`` section."""
    d = data_config
    return dict(
        image_size=d.image_size,
        heatmap_size=d.heatmap_size,
        heatmap_sigma=d.heatmap_sigma,
        crop_scale=d.crop_scale,
        mirror_left=d.mirror_left,
        scale_jitter=d.scale_jitter,
        translate_jitter=d.translate_jitter,
        rotation_deg=d.rotation_deg,
        color_jitter=d.color_jitter,
    )


def dataset(
    source: Sequence,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    workers: int = 0,
    **process_kwargs,
) -> grain.IterDataset:
    """A grain pipeline of fixed-shape batches over a random-access ``source``.

    ``source`` is e.g. ``tfds.data_source(...)`` (records as dicts of arrays). Each
    process reads its own shard (``shard_index`` of ``shard_count``, interleaved).
    Training shuffles (reshuffled each epoch), repeats ``num_epochs`` times (None:
    forever) and augments; evaluation keeps the order, runs once and keeps the last
    partial batch. ``workers > 0`` decodes and augments in that many processes.
    ``process_kwargs`` go to :func:`process` (jitter ones only apply when training).
    Deterministic given ``seed``.
    """
    ds = grain.MapDataset.source(source)
    if shard_count > 1:
        ds = ds.slice(slice(shard_index, None, shard_count))
    if train:
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
        ds = ds.random_map(lambda r, rng: process(r, rng, **process_kwargs), seed=seed)
    else:
        eval_kwargs = {
            k: v
            for k, v in process_kwargs.items()
            if k not in ("scale_jitter", "translate_jitter", "rotation_deg", "color_jitter")
        }
        ds = ds.map(lambda r: process(r, None, **eval_kwargs))
    ds = ds.batch(batch_size, drop_remainder=train)
    it = ds.to_iter_dataset()
    if workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it
