"""Shared internals of the renderers: input checks, screen-space faces, binning into tiles."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit.render.camera import Camera, batch_camera, project_with_depth

Array = jax.Array


def check_mesh(fn: str, vertices, faces, camera: Camera) -> tuple[Array, Array, Camera]:
    """Checks shapes at trace time; returns (vertices [B,V,3], faces [F,3] int32, camera [B])."""
    vertices = jnp.asarray(vertices)
    faces = jnp.asarray(faces)
    if not isinstance(camera, Camera):
        raise TypeError(f"{fn}: camera must be a handfit.render.Camera, got {type(camera)}")
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"{fn}: vertices must have shape [B, V, 3], got {vertices.shape}")
    if not jnp.issubdtype(vertices.dtype, jnp.floating):
        raise ValueError(f"{fn}: vertices must be floating point, got {vertices.dtype}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"{fn}: faces must have shape [F, 3], got {faces.shape}")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"{fn}: faces must be integer vertex indices, got {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError(f"{fn}: faces must have at least one face, got shape {faces.shape}")
    if camera.height < 1 or camera.width < 1:
        raise ValueError(f"{fn}: camera height/width must be >= 1, got {camera.shape}")
    return vertices, faces.astype(jnp.int32), batch_camera(camera, vertices.shape[0])


# A face with a corner projected farther than this from the image origin (pixels) is not
# drawn: float32 squared distances to it would overflow (~1e19 px) or lose all precision.
MAX_PIXELS = 1e6


class ScreenFaces(NamedTuple):
    """Faces of one image in pixel coordinates."""

    tri: Array  # [F, 3, 2] (u, v) of the three corners; 0 for faces that are not valid
    depth: Array  # [F, 3] z of the three corners
    valid: Array  # [F] bool: finite corners within MAX_PIXELS, none nearer than camera.near


def screen_faces(vertices: Array, faces: Array, camera: Camera) -> ScreenFaces:
    """Projects ``vertices: [V, 3]`` of one image (camera fields scalar) onto the screen.

    Faces that are not valid get corners at 0 and no gradient: a NaN, inf or far-away
    vertex changes neither the image nor any other vertex's gradient.
    """
    finite = jnp.all(jnp.isfinite(vertices), axis=-1)  # [V]
    # Non-finite vertices are projected from a harmless point, so the projection's
    # gradient, multiplied by 0 below, is not NaN.
    safe = jnp.where(finite[:, None], vertices, jnp.array([0.0, 0.0, 1.0], vertices.dtype))
    uv, z = project_with_depth(safe, camera)
    ok = finite & jnp.all(jnp.abs(uv) <= MAX_PIXELS, axis=-1)
    if not camera.weak:
        ok &= z >= camera.near
    valid = jnp.all(ok[faces], axis=-1)
    tri = jnp.where(valid[:, None, None], uv[faces], 0.0)
    return ScreenFaces(tri, z[faces], valid)


def num_tiles(height: int, width: int, tile: int) -> tuple[int, int]:
    """Tiles per column and per row."""
    return -(-height // tile), -(-width // tile)


def untile(x: Array, height: int, width: int) -> Array:
    """[nty, ntx, T, T, ...] -> [H, W, ...]."""
    nty, ntx, t = x.shape[:3]
    x = jnp.moveaxis(x, 2, 1)  # [nty, T, ntx, T, ...]
    x = x.reshape((nty * t, ntx * t) + x.shape[4:])
    return x[:height, :width]


class Entries(NamedTuple):
    """A flat list of (face, tile) candidate pairs, sorted by face, of static length P."""

    face: Array  # [P] int32 face id
    tile_y: Array  # [P] int32 tile row
    tile_x: Array  # [P] int32 tile column
    used: Array  # [P] bool: the slot holds a pair (the list is padded to its budget)
    total: Array  # [] int32: pairs wanted before the budget was applied
    overflow: Array  # [] int32: pairs dropped because the budget was full


def pixel_range(lo: Array, hi: Array, size: int) -> tuple[Array, Array, Array]:
    """Pixels whose centre c + 0.5 lies in [lo, hi], clipped to [0, size): (first, last, empty)."""
    first = jnp.ceil(lo - 0.5)
    last = jnp.floor(hi - 0.5)
    empty = (last < 0) | (first > size - 1) | (first > last)
    first = jnp.clip(first, 0, size - 1).astype(jnp.int32)
    last = jnp.clip(last, 0, size - 1).astype(jnp.int32)
    return first, last, empty


def _enumerate(n: Array, budget: int) -> tuple[Array, Array, Array, Array, Array]:
    """Flattens ``n [F]`` items per face into ``budget`` slots, in face order.

    Returns (face [P] int32, k [P] int32 the item's index within its face, used [P] bool,
    total [] int32 items wanted, overflow [] int32 items dropped).
    """
    ends = jnp.cumsum(n)
    total = ends[-1]
    slot = jnp.arange(budget, dtype=jnp.int32)
    face = jnp.searchsorted(ends, slot, side="right")
    face = jnp.minimum(face, n.shape[0] - 1).astype(jnp.int32)
    k = slot - (ends - n)[face]
    return face, k, slot < total, total, jnp.maximum(total - budget, 0)


def _face_boxes(sf: ScreenFaces, height: int, width: int, radius: Array):
    """Pixel ranges of each face's screen box grown by ``radius``; no gradient.

    Returns (x0, x1, y0, y1) [F] int32, the first and last pixel columns and rows whose
    centres the box contains, and empty [F] bool (no such pixel, or an invalid face).
    """
    tri = jax.lax.stop_gradient(sf.tri)  # 0 for invalid faces
    radius = jax.lax.stop_gradient(radius)
    lo = jnp.min(tri, axis=1) - radius  # [F, 2]
    hi = jnp.max(tri, axis=1) + radius
    x0, x1, ex = pixel_range(lo[:, 0], hi[:, 0], width)
    y0, y1, ey = pixel_range(lo[:, 1], hi[:, 1], height)
    return x0, x1, y0, y1, ex | ey | ~sf.valid


def face_entries(
    sf: ScreenFaces, height: int, width: int, tile: int, budget: int, radius: Array
) -> Entries:
    """Lists every tile that a face's screen box, grown by ``radius``, reaches; no gradient.

    A face reaches a tile when its bounding box grown by ``radius`` pixels contains the centre
    of a pixel of the tile. Costs O(F + P): no tiles x faces table.
    """
    x0, x1, y0, y1, empty = _face_boxes(sf, height, width, radius)
    x0, x1, y0, y1 = x0 // tile, x1 // tile, y0 // tile, y1 // tile
    nx = x1 - x0 + 1
    n = jnp.where(empty, 0, nx * (y1 - y0 + 1))  # [F] tiles per face
    face, k, used, total, overflow = _enumerate(n, budget)
    nxf = jnp.maximum(nx[face], 1)
    tile_y = jnp.where(used, y0[face] + k // nxf, 0)
    tile_x = jnp.where(used, x0[face] + k % nxf, 0)
    return Entries(face, tile_y, tile_x, used, total, overflow)


class Windows(NamedTuple):
    """A flat list of (face, window) pairs of one image, sorted by face, of static length P.

    A window is the ``size`` x ``size`` block of pixels whose top-left pixel is (top, left);
    it may reach past the image's last row or column (callers pad by size - 1).
    """

    face: Array  # [P] int32 face id
    top: Array  # [P] int32 first pixel row
    left: Array  # [P] int32 first pixel column
    used: Array  # [P] bool: the slot holds a pair (the list is padded to its budget)
    total: Array  # [] int32: pairs wanted before the budget was applied
    overflow: Array  # [] int32: pairs dropped because the budget was full


def face_windows(
    sf: ScreenFaces, height: int, width: int, size: int, budget: int, radius: Array
) -> Windows:
    """Covers each face's screen box, grown by ``radius``, with windows anchored at its corner.

    A face whose box spans w x h pixels gets ceil(w / size) x ceil(h / size) windows that
    tile the box from its top-left pixel, so no pixel is listed twice for a face and, unlike
    image-aligned tiles, a small face needs one window. No gradient; O(F + P).
    """
    x0, x1, y0, y1, empty = _face_boxes(sf, height, width, radius)
    nx = (x1 - x0) // size + 1
    n = jnp.where(empty, 0, nx * ((y1 - y0) // size + 1))  # [F] windows per face
    face, k, used, total, overflow = _enumerate(n, budget)
    nxf = jnp.maximum(nx[face], 1)
    top = jnp.where(used, y0[face] + (k // nxf) * size, 0)
    left = jnp.where(used, x0[face] + (k % nxf) * size, 0)
    return Windows(face, top, left, used, total, overflow)


def block_pixels(top: Array, left: Array, size: int, dtype) -> tuple[Array, Array]:
    """Pixel centres of ``size`` x ``size`` blocks whose top-left pixels are (top, left) [P]:
    (py [P, size, 1], px [P, 1, size])."""
    off = jnp.arange(size, dtype=dtype) + 0.5
    py = top.astype(dtype)[:, None, None] + off[None, :, None]
    px = left.astype(dtype)[:, None, None] + off[None, None, :]
    return py, px


def entry_pixels(ent: Entries, tile: int, dtype) -> tuple[Array, Array]:
    """Pixel centres of each entry's tile: (py [P, T, 1], px [P, 1, T])."""
    return block_pixels(ent.tile_y * tile, ent.tile_x * tile, tile, dtype)


def tile_index(ent: Entries, width: int, tile: int) -> Array:
    """Flat tile id (row-major over tiles) of each entry: [P] int32."""
    return ent.tile_y * num_tiles(1, width, tile)[1] + ent.tile_x
