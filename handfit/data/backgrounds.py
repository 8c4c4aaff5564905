"""Backgrounds for rendered hands: procedural textures, or a folder of the user's images."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from handfit.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``[size, size, 3]`` colour noise: a ``cells`` x ``cells`` random grid, upsampled smoothly."""
    grid = rng.random((cells, cells, 3)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def procedural(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random background ``[size, size, 3]`` float32 in [0, 1].

    A mix of a colour gradient, smooth noise at two scales, stripes and random
    blobs, so that a network cannot find the hand by colour or flatness alone.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.random(3), rng.random(3)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    img = c0 * (1 - t) + c1 * t
    img = 0.5 * img + 0.5 * _smooth_noise(rng, size, int(rng.integers(2, 6)))
    img = img + 0.25 * (_smooth_noise(rng, size, int(rng.integers(8, 24))) - 0.5)
    if rng.random() < 0.4:  # stripes
        freq, phase, a = rng.uniform(3, 15), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        stripes = 0.5 + 0.5 * np.sin(freq * 2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) + phase)
        img = img * (1 - 0.3 * stripes[..., None]) + 0.3 * stripes[..., None] * rng.random(3)
    for _ in range(int(rng.integers(0, 5))):  # blobs
        cx, cy, r = rng.random(), rng.random(), rng.uniform(0.05, 0.3)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img[inside] = 0.3 * img[inside] + 0.7 * rng.random(3)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


class ImageFolder:
    """Random square crops of the images in a folder (recursively), as backgrounds."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"background folder {folder} does not exist; give a folder of images "
                f"({', '.join(IMAGE_SUFFIXES)}) or leave the setting empty for procedural ones"
            )
        self.paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise FileNotFoundError(
                f"background folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})"
            )

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        path = self.paths[int(rng.integers(len(self.paths)))]
        try:
            with Image.open(path) as opened:
                img = opened.convert("RGB")
        except (OSError, Image.DecompressionBombError) as e:
            raise UserError(
                f"background image {path} cannot be read ({e}); remove it from {path.parent} "
                f"or replace it by an image PIL reads"
            ) from e
        side = min(img.size)
        crop = int(side * rng.uniform(0.5, 1.0))
        x0 = int(rng.integers(0, img.size[0] - crop + 1))
        y0 = int(rng.integers(0, img.size[1] - crop + 1))
        img = img.crop((x0, y0, x0 + crop, y0 + crop)).resize((size, size), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0


def source(folder: str | os.PathLike | None):
    """A background generator ``(rng, size) -> [size, size, 3]``: the folder's or procedural."""
    return ImageFolder(folder) if folder else procedural


def draw(generator, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` backgrounds ``[n, size, size, 3]`` float32 from a ``source`` generator (host side)."""
    return np.stack([generator(rng, size) for _ in range(n)])


def _smooth_noise_jax(key: jax.Array, n: int, size: int, cells: int) -> jax.Array:
    """``[n, size, size, 3]`` colour noise: a random ``cells`` grid, upsampled bicubically."""
    grid = jax.random.uniform(key, (n, cells, cells, 3))
    return jax.image.resize(grid, (n, size, size, 3), "cubic")


def procedural_jax(key: jax.Array, n: int, size: int) -> jax.Array:
    """``n`` random backgrounds ``[n, size, size, 3]`` float32 in [0, 1], in jnp (jit-able).

    The recipe of :func:`procedural` for use inside a compiled step, where there is no
    PIL: a colour gradient, smooth noise at a coarse (4 x 4) and a fine (16 x 16) scale,
    stripes for 40 % of the images and up to 4 blobs. Grid sizes are fixed (static
    shapes), where :func:`procedural` draws them.
    """
    keys = jax.random.split(key, 11)
    yy, xx = (jnp.mgrid[0:size, 0:size].astype(jnp.float32) + 0.5) / size  # [size, size]

    def unit(k, shape=()):
        return jax.random.uniform(k, (n,) + shape)

    c0, c1 = unit(keys[0], (3,)), unit(keys[1], (3,))
    angle = 2 * jnp.pi * unit(keys[2])[:, None, None]
    t = (jnp.cos(angle) * xx + jnp.sin(angle) * yy)[..., None]  # [n, size, size, 1]
    img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
    img = 0.5 * img + 0.5 * _smooth_noise_jax(keys[3], n, size, 4)
    img = img + 0.25 * (_smooth_noise_jax(keys[4], n, size, 16) - 0.5)
    # stripes
    freq, phase, a = jnp.moveaxis(unit(keys[5], (3,)), -1, 0)[..., None, None]
    freq, phase, a = 3.0 + 12.0 * freq, 2 * jnp.pi * phase, jnp.pi * a
    stripes = 0.5 + 0.5 * jnp.sin(freq * 2 * jnp.pi * (jnp.cos(a) * xx + jnp.sin(a) * yy) + phase)
    stripes = (0.3 * stripes * (unit(keys[6]) < 0.4)[:, None, None])[..., None]
    img = img * (1 - stripes) + stripes * unit(keys[7], (3,))[:, None, None]
    # blobs: 4 candidates, each drawn with probability 1/2
    centre = unit(keys[8], (4, 2))
    radius = 0.05 + 0.25 * unit(keys[9], (4,))
    colour, on = jnp.split(unit(keys[10], (4, 4)), [3], axis=-1)
    for i in range(4):
        d2 = (xx - centre[:, i, 0, None, None]) ** 2 + (yy - centre[:, i, 1, None, None]) ** 2
        inside = (d2 < radius[:, i, None, None] ** 2) & (on[:, i, 0] < 0.5)[:, None, None]
        img = jnp.where(inside[..., None], 0.3 * img + 0.7 * colour[:, i, None, None], img)
    return jnp.clip(img, 0.0, 1.0).astype(jnp.float32)
