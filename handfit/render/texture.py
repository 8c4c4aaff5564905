"""Vertex-coloured RGB rendering: interpolated colours, ambient + Lambert light, soft alpha."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit.render import _tiles
from handfit.render.camera import Camera
from handfit.render.raster import interpolate, rasterize
from handfit.render.soft import soft_silhouette

Array = jax.Array


class Shaded(NamedTuple):
    """Result of ``shade``.

    rgb: [B, H, W, 3] straight (not premultiplied) colour in [0, 1] where albedo is; on
      background pixels next to the mesh (up to ``edge_pixels`` away) the colour of the
      nearest covered pixels, so that ``rgb * alpha`` has soft edges of the right colour;
      0 further out.
    alpha: [B, H, W] coverage in [0, 1]: 1 on the hard mask, the soft silhouette outside it.
    overflow: [B] int32, the overflow of the rasteriser plus that of the soft silhouette
      (0: nothing was dropped).
    """

    rgb: Array
    alpha: Array
    overflow: Array

    @property
    def rgba(self) -> Array:
        """[B, H, W, 4]: rgb and alpha."""
        return jnp.concatenate([self.rgb, self.alpha[..., None]], axis=-1)


def vertex_normals(vertices: Array, faces: Array) -> Array:
    """Unit vertex normals, area-weighted over incident faces: [B, V, 3] from [B, V, 3].

    Faces wound counter-clockwise seen from outside (trimesh's convention) give outward
    normals. Vertices with no area around them get a zero normal (finite gradients).
    """
    tri = vertices[:, faces]  # [B, F, 3, 3]
    fn = jnp.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # 2 x area
    num_v = vertices.shape[1]
    n = jax.vmap(lambda f: jax.ops.segment_sum(jnp.repeat(f, 3, axis=0), faces.reshape(-1), num_v))(
        fn
    )
    sq = jnp.sum(n * n, axis=-1, keepdims=True)
    ok = sq > 0
    return jnp.where(ok, n * jax.lax.rsqrt(jnp.where(ok, sq, 1.0)), 0.0)


def _grow(rgb: Array, mask: Array, steps: int) -> Array:
    """Fills background pixels with the mean colour of covered 3x3 neighbours, ``steps`` times.

    rgb: [B, H, W, 3]; mask: [B, H, W] in {0, 1}.
    """

    def box(x):
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")

    m = mask[..., None]
    for _ in range(steps):
        total = box(rgb * m)
        count = box(m)
        filled = total / jnp.maximum(count, 1.0)
        rgb = jnp.where(m > 0, rgb, filled)
        m = jnp.maximum(m, (count > 0).astype(m.dtype))
    return rgb * m


@functools.partial(
    jax.jit, static_argnames=("edge_pixels", "two_sided", "tile", "raster_budget", "soft_budget")
)
def shade(
    vertices: Array,
    faces: Array,
    colors: Array,
    camera: Camera,
    *,
    light_dir: Array = (0.0, 0.0, -1.0),
    ambient: float | Array = 0.4,
    diffuse: float | Array = 0.6,
    sigma: float | Array = 0.5,
    edge_pixels: int = 2,
    two_sided: bool = True,
    tile: int = 8,
    raster_budget: int | None = None,
    soft_budget: int | None = None,
) -> Shaded:
    """Renders vertex-coloured meshes with ambient + Lambertian shading and soft edges.

    Per pixel: the rasteriser's nearest face and (perspective-correct) barycentrics
    interpolate the vertex colours (albedo) and vertex normals; colour = albedo ·
    (ambient + diffuse · max(n · l, 0)) with l the unit ``light_dir`` (|n · l| when
    ``two_sided``, so that the winding of the faces does not matter). Alpha is 1 on the hard
    mask and the soft silhouette (SoftRas, ``sigma`` in pixels²) outside it, so edges are
    antialiased and gradients reach the vertices from the background pixels around the
    mesh as well as through the barycentrics, normals and colours inside it. Colour is not
    clipped: keep ``ambient + diffuse <= 1`` for colours in [0, 1].

    Args:
      vertices: [B, V, 3] in camera coordinates.
      faces: [F, 3] int vertex ids.
      colors: [B, V, 3] or [V, 3] per-vertex albedo in [0, 1].
      camera: the camera; fields [] or [B].
      light_dir: [3] or [B, 3], direction from the surface towards the light in camera
        coordinates (default (0, 0, -1): light from the camera).
      ambient, diffuse: scalars or [B].
      sigma: soft-edge sharpness in pixels².
      edge_pixels: how far (pixels, static) colours are extended past the hard mask; the soft
        edge of ``sigma`` reaches about sqrt(9.2 sigma) pixels.
      two_sided: light both sides of faces (static).
      tile, raster_budget, soft_budget: passed to ``rasterize`` and ``soft_silhouette``.

    Returns:
      Shaded(rgb [B, H, W, 3], alpha [B, H, W], overflow [B]); ``.rgba`` is [B, H, W, 4].
    """
    vertices, faces, camera = _tiles.check_mesh("shade", vertices, faces, camera)
    b, v = vertices.shape[:2]
    colors = jnp.asarray(colors, vertices.dtype)
    if colors.ndim == 2:
        colors = jnp.broadcast_to(colors, (b,) + colors.shape)
    if colors.shape != (b, v, 3):
        raise ValueError(
            f"shade: colors must have shape [{v}, 3] or [{b}, {v}, 3], got {colors.shape}"
        )
    light = jnp.asarray(light_dir, vertices.dtype)
    if light.shape not in ((3,), (b, 3)):
        raise ValueError(f"shade: light_dir must have shape [3] or [{b}, 3], got {light.shape}")
    light = jnp.broadcast_to(light, (b, 3))
    light = light / jnp.linalg.norm(light, axis=-1, keepdims=True)
    scal = []
    for name, x in (("ambient", ambient), ("diffuse", diffuse)):
        x = jnp.asarray(x, vertices.dtype)
        if x.shape not in ((), (b,)):
            raise ValueError(f"shade: {name} must be a scalar or [{b}], got {x.shape}")
        scal.append(jnp.broadcast_to(x, (b,))[:, None, None, None])
    ambient, diffuse = scal

    frags = rasterize(vertices, faces, camera, tile=tile, budget=raster_budget)
    albedo = interpolate(frags, faces, colors)  # [B, H, W, 3]
    normal = interpolate(frags, faces, vertex_normals(vertices, faces))
    sq = jnp.sum(normal * normal, -1, keepdims=True)
    ok = sq > 0
    normal = jnp.where(ok, normal * jax.lax.rsqrt(jnp.where(ok, sq, 1.0)), 0.0)
    cos = jnp.sum(normal * light[:, None, None, :], -1, keepdims=True)
    lambert = jnp.abs(cos) if two_sided else jnp.maximum(cos, 0.0)
    rgb = albedo * (ambient + diffuse * lambert) * frags.mask[..., None]
    rgb = _grow(rgb, frags.mask, edge_pixels)

    soft = soft_silhouette(vertices, faces, camera, sigma=sigma, tile=tile, budget=soft_budget)
    alpha = jnp.maximum(frags.mask, soft.silhouette)
    return Shaded(rgb, alpha, frags.overflow + soft.overflow)


def composite(image: Shaded, background: Array) -> Array:
    """Alpha-composites a rendering over backgrounds: [B, H, W, 3].

    background: [B, H, W, 3] or [H, W, 3], float in [0, 1].
    """
    background = jnp.asarray(background, image.rgb.dtype)
    if background.shape not in (image.rgb.shape, image.rgb.shape[1:]):
        raise ValueError(
            f"composite: background must have shape {image.rgb.shape} or "
            f"{image.rgb.shape[1:]}, got {background.shape}"
        )
    a = image.alpha[..., None]
    return image.rgb * a + background * (1.0 - a)
