"""Hard rasteriser (z-buffer): per pixel the nearest face id, barycentrics, depth and a mask."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit.render import _tiles
from handfit.render.camera import Camera

Array = jax.Array


class Fragments(NamedTuple):
    """Result of ``rasterize``; background pixels have face_id -1 and zeros elsewhere.

    face_id: [B, H, W] int32 id of the nearest face covering the pixel centre, or -1.
    bary: [B, H, W, 3] barycentric weights of the face's corners at the pixel centre,
      perspective-correct for a perspective camera (weights of the 3D point, so that
      interpolated attributes are those of the surface point seen), screen-space (equal to
      those) for a weak-perspective camera. Differentiable w.r.t. the vertices.
    depth: [B, H, W] camera z of the surface point (0 on background). Differentiable.
    mask: [B, H, W] float32, 1 where a face covers the pixel centre, else 0.
    overflow: [B] int32 (face, tile) pairs dropped because the budget was full; 0 means
      every face was tested at every pixel its bounding box covers.
    """

    face_id: Array
    bary: Array
    depth: Array
    mask: Array
    overflow: Array


def default_budget(num_faces: int, height: int, width: int, tile: int) -> int:
    """Default number of (face, tile) pairs per image: 4 per face plus 2 per tile."""
    nty, ntx = _tiles.num_tiles(height, width, tile)
    return 4 * num_faces + 2 * nty * ntx


def _edge_weights(py: Array, px: Array, u: list, v: list) -> tuple[list, Array, Array]:
    """Edge functions of pixel centres: (w [3 arrays], area, inside).

    py, px: broadcastable pixel centres; u, v: the three corners' coordinates, each
    broadcastable. w_i is twice the signed area of the sub-triangle opposite corner i (so
    w_i / area are the screen-space barycentrics); inside is closed (pixels on an edge are
    covered) and false for zero-area triangles.
    """
    w = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        w.append((u[k] - u[j]) * (py - v[j]) - (v[k] - v[j]) * (px - u[j]))
    area = (u[1] - u[0]) * (v[2] - v[0]) - (v[1] - v[0]) * (u[2] - u[0])
    pos = (w[0] >= 0) & (w[1] >= 0) & (w[2] >= 0)
    neg = (w[0] <= 0) & (w[1] <= 0) & (w[2] <= 0)
    return w, area, (pos | neg) & (area != 0)


def _screen_weights(py: Array, px: Array, tri: Array) -> tuple[Array, Array]:
    """Screen-space barycentrics and coverage: (lam [..., 3], inside [...]); tri: [..., 3, 2]."""
    u = [tri[..., i, 0] for i in range(3)]
    v = [tri[..., i, 1] for i in range(3)]
    w, area, inside = _edge_weights(py, px, u, v)
    safe = jnp.where(area != 0, area, 1.0)
    return jnp.stack([wi / safe for wi in w], axis=-1), inside


def _depth_and_bary(lam: Array, z: Array, weak: bool) -> tuple[Array, Array]:
    """(depth [...], bary [..., 3]) from screen weights lam and corner depths z: [..., 3]."""
    if weak:
        return jnp.sum(lam * z, -1), lam
    q = lam / z  # 1/z is affine in screen space
    s = jnp.sum(q, -1)
    s = jnp.where(s > 0, s, 1.0)
    return 1.0 / s, q / s[..., None]


def _raster_one(
    sf: _tiles.ScreenFaces, height: int, width: int, tile: int, budget: int, weak: bool
):
    """Rasterises one image: (face_id [H,W], bary [H,W,3], depth [H,W], mask, overflow)."""
    ent = _tiles.face_entries(sf, height, width, tile, budget, jnp.zeros((), sf.tri.dtype))
    tri = jax.lax.stop_gradient(sf.tri)
    zf = jax.lax.stop_gradient(sf.depth)
    py, px = _tiles.entry_pixels(ent, tile, tri.dtype)
    g = tri[ent.face]  # [P, 3, 2]
    gz = zf[ent.face]  # [P, 3]
    u = [g[:, i, 0][:, None, None] for i in range(3)]
    v = [g[:, i, 1][:, None, None] for i in range(3)]
    w, area, inside = _edge_weights(py, px, u, v)  # [P, T, T]
    area = jnp.where(area != 0, area, 1.0)
    if weak:
        z = sum(w[i] * gz[:, i, None, None] for i in range(3)) / area
    else:  # 1/z is affine in screen space
        inv = sum(w[i] / gz[:, i, None, None] for i in range(3)) / area
        z = 1.0 / jnp.where(inv > 0, inv, 1.0)
    hit = inside & ent.used[:, None, None]
    z = jnp.where(hit, z, jnp.inf)
    nty, ntx = _tiles.num_tiles(height, width, tile)
    tid = _tiles.tile_index(ent, width, tile)
    zbuf = jnp.full((nty * ntx, tile, tile), jnp.inf, z.dtype).at[tid].min(z)
    win = hit & (z == zbuf[tid])
    fid = jnp.where(win, ent.face[:, None, None], -1)
    fid = jnp.full((nty * ntx, tile, tile), -1, jnp.int32).at[tid].max(fid)
    fid = _tiles.untile(fid.reshape(nty, ntx, tile, tile), height, width)  # [H, W]

    # Differentiable pass on the winners only.
    mask = fid >= 0
    f = jnp.maximum(fid, 0)
    r = jnp.arange(height, dtype=tri.dtype)[:, None] + 0.5
    c = jnp.arange(width, dtype=tri.dtype)[None, :] + 0.5
    # Background pixels use a harmless stand-in triangle so no NaN reaches any gradient.
    stand_in = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], tri.dtype)
    ftri = jnp.where(mask[..., None, None], sf.tri[f], stand_in)
    fz = jnp.where(mask[..., None], sf.depth[f], 1.0)
    lam, _ = _screen_weights(r, c, ftri)
    depth, bary = _depth_and_bary(lam, fz, weak)
    depth = jnp.where(mask, depth, 0.0)
    bary = jnp.where(mask[..., None], bary, 0.0)
    return fid, bary, depth, mask.astype(jnp.float32), ent.overflow


@functools.partial(jax.jit, static_argnames=("tile", "budget"))
def rasterize(
    vertices: Array,
    faces: Array,
    camera: Camera,
    *,
    tile: int = 8,
    budget: int | None = None,
) -> Fragments:
    """Z-buffer rasterisation at pixel centres.

    A face covers a pixel when the pixel centre lies in its projected triangle, edges
    included; zero-area faces cover nothing, and (perspective mode) faces with a vertex at
    z < camera.near are skipped (no clipping). Among covering faces the one with the smallest
    camera depth at the centre wins (ties: the larger face id). Faces are binned like
    ``soft_silhouette`` (each face lists the tiles its bounding box reaches, in one flat
    list of ``budget`` pairs); the face choice has no gradient, ``bary`` and ``depth`` are
    differentiable w.r.t. the vertices.

    Args:
      vertices: [B, V, 3] in camera coordinates.
      faces: [F, 3] int vertex ids.
      camera: the camera; fields [] or [B].
      tile: tile side in pixels (static).
      budget: (face, tile) pairs per image (static); ``None``: ``default_budget``.

    Returns:
      Fragments(face_id [B,H,W], bary [B,H,W,3], depth [B,H,W], mask [B,H,W], overflow [B]).
    """
    vertices, faces, camera = _tiles.check_mesh("rasterize", vertices, faces, camera)
    h, w = camera.height, camera.width
    if budget is None:
        budget = default_budget(faces.shape[0], h, w, tile)

    def one(v, cam):
        sf = _tiles.screen_faces(v, faces, cam)
        return _raster_one(sf, h, w, tile, budget, cam.weak)

    return Fragments(*jax.vmap(one)(vertices, camera))


def interpolate(fragments: Fragments, faces: Array, attributes: Array) -> Array:
    """Interpolates per-vertex attributes at the pixels: [B, H, W, C] (0 on background).

    Args:
      fragments: from ``rasterize``.
      faces: [F, 3] the faces given to ``rasterize``.
      attributes: [B, V, C] or [V, C].
    """
    attributes = jnp.asarray(attributes)
    b = fragments.face_id.shape[0]
    if attributes.ndim == 2:
        attributes = jnp.broadcast_to(attributes, (b,) + attributes.shape)
    if attributes.ndim != 3 or attributes.shape[0] != b:
        raise ValueError(
            f"interpolate: attributes must have shape [V, C] or [{b}, V, C], got {attributes.shape}"
        )
    faces = jnp.asarray(faces)
    f = jnp.maximum(fragments.face_id, 0)  # [B, H, W]
    corner = faces[f]  # [B, H, W, 3]
    vals = jax.vmap(lambda a, c: a[c])(attributes, corner)  # [B, H, W, 3, C]
    out = jnp.sum(fragments.bary[..., None] * vals, axis=-2)
    return jnp.where(fragments.face_id[..., None] >= 0, out, 0.0)
