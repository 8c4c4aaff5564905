"""Soft silhouettes after SoftRas (Liu et al. 2019): a tiled fast path and a dense reference."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit.render import _tiles
from handfit.render.camera import Camera

Array = jax.Array

# Default: a face is evaluated at a pixel only where its probability D can exceed this.
CUTOFF = 1e-4


class SoftSilhouette(NamedTuple):
    """Result of ``soft_silhouette``.

    silhouette: [B, H, W] float in [0, 1].
    overflow: [B] int32, the number of (face, tile) candidate pairs dropped because the
      image's budget was full. 0 means every face was evaluated wherever its D can exceed
      the cutoff, i.e. the result equals the dense definition up to those tiny terms; > 0
      means some pixels may be too low: raise ``budget`` (``candidate_count`` says how many
      are needed).
    """

    silhouette: Array
    overflow: Array


def cutoff_radius(sigma, cutoff: float = CUTOFF) -> Array:
    """Distance in pixels beyond which D = sigmoid(-d²/sigma) is below ``cutoff``."""
    return jnp.sqrt(jnp.asarray(sigma) * math.log(1.0 / cutoff))


def default_budget(num_faces: int, height: int, width: int, tile: int) -> int:
    """Default number of (face, tile) pairs per image: 8 per face plus 4 per tile.

    Enough for a ~1500-face hand filling a 224² image at sigma <= 1.5 (it needs ~12.8k
    pairs there, ~7.8k at 112², ~6k at 64²). Time grows with the budget: hot loops should
    pass ``candidate_count`` of typical inputs plus a margin.
    """
    nty, ntx = _tiles.num_tiles(height, width, tile)
    return 8 * num_faces + 4 * nty * ntx


def _edges(py: Array, px: Array, tri: tuple[Array, ...]):
    """Per edge i (corner i to corner i+1): t_i (no gradient), residual r_i, d_i², cross_i.

    ``tri`` holds the six corner coordinates (u0, v0, u1, v1, u2, v2), each broadcastable
    against the pixel centres ``py``, ``px``. r_i = p - (a + t_i (b - a)) with t_i the
    clamped projection parameter, so d_i² = |r_i|² is the squared distance to the edge.
    """
    out = []
    for i in range(3):
        j = (i + 1) % 3
        ax, ay, bx, by = tri[2 * i], tri[2 * i + 1], tri[2 * j], tri[2 * j + 1]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        l2 = ex * ex + ey * ey
        ok = l2 > 0
        inv = jnp.where(ok, 1.0 / jnp.where(ok, l2, 1.0), 0.0)
        t = jax.lax.stop_gradient(jnp.clip((wx * ex + wy * ey) * inv, 0.0, 1.0))
        rx, ry = wx - t * ex, wy - t * ey
        out.append((t, rx, ry, rx * rx + ry * ry, ex * wy - ey * wx))
    return out


def _signed_x(edges, inv_sigma: Array) -> tuple[Array, Array, Array]:
    """(x = sign · d²/sigma, sign, d²) from ``_edges``; sign +1 strictly inside, else -1.

    On an edge d² = 0, so D = sigmoid(x) is 1/2 from both sides: continuous.
    """
    d2 = jnp.minimum(jnp.minimum(edges[0][3], edges[1][3]), edges[2][3])
    c0, c1, c2 = (e[4] for e in edges)
    inside = ((c0 > 0) & (c1 > 0) & (c2 > 0)) | ((c0 < 0) & (c1 < 0) & (c2 < 0))
    sign = jnp.where(inside, 1.0, -1.0).astype(d2.dtype)
    return sign * d2 * inv_sigma, sign, d2


def _gather_tri(tri: Array, face: Array) -> tuple[Array, ...]:
    """Corners of each entry's face: 6 arrays [P, 1, 1]; tri: [F, 3, 2], face: [P]."""
    g = tri[face]  # [P, 3, 2]
    return tuple(g[:, k // 2, k % 2][:, None, None] for k in range(6))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _log_sum(
    tri: Array, ent: _tiles.Entries, inv_sigma: Array, height: int, width: int, tile: int
) -> Array:
    """Σ_faces log(1 - D) per pixel as [tiles, T, T]; tri: [F, 3, 2]; gradient to tri only."""
    return _log_sum_fwd(tri, ent, inv_sigma, height, width, tile)[0]


def _log_sum_fwd(tri, ent, inv_sigma, height, width, tile):
    py, px = _tiles.entry_pixels(ent, tile, tri.dtype)
    edges = _edges(py, px, _gather_tri(tri, ent.face))
    x, sign, _ = _signed_x(edges, inv_sigma)
    term = jnp.where(ent.used[:, None, None], -jax.nn.softplus(x), 0.0)  # log(1 - D)
    nty, ntx = _tiles.num_tiles(height, width, tile)
    acc = jnp.zeros((nty * ntx, tile, tile), term.dtype)
    acc = acc.at[_tiles.tile_index(ent, width, tile)].add(term, mode="promise_in_bounds")
    # Residuals for the backward pass: the nearest edge and its closest point, and
    # d log(1 - D) / d d² = -D · sign / sigma (up to the factor -1).
    d0, d1, d2 = (e[3] for e in edges)
    sel0 = (d0 <= d1) & (d0 <= d2)
    sel1 = ~sel0 & (d1 <= d2)
    edge = jnp.where(sel0, 0, jnp.where(sel1, 1, 2)).astype(jnp.int8)
    pick = [
        jnp.where(sel0, edges[0][k], jnp.where(sel1, edges[1][k], edges[2][k])) for k in range(3)
    ]
    coef = jnp.where(ent.used[:, None, None], jax.nn.sigmoid(x) * sign * (2.0 * inv_sigma), 0.0)
    return acc, (ent, coef, edge, *pick, jnp.zeros((tri.shape[0], 0), tri.dtype))


def _log_sum_bwd(height, width, tile, res, g):
    """Exact vertex gradient: d log(1 - D)/d d² = -D · sign/sigma, and for the nearest edge
    (a, b) with closest point a + t (b - a) and r = p - that point: d d²/da = -2 (1 - t) r,
    d d²/db = -2 t r."""
    del height
    ent, coef, edge, t, rx, ry, face_shape = res
    k = g[_tiles.tile_index(ent, width, tile)] * coef  # [P, T, T]
    kb = k * t
    ka = k - kb
    flat = []
    for c in range(3):  # corner c is the start of edge c and the end of edge c - 1
        wa = jnp.where(edge == c, ka, 0.0) + jnp.where(edge == (c + 2) % 3, kb, 0.0)
        flat += [wa * rx, wa * ry]
    sums = [jnp.sum(gc, axis=(1, 2)) for gc in flat]
    per_entry = jnp.stack(sums, -1).reshape(-1, 3, 2)  # [P, 3, 2]
    dtri = jax.ops.segment_sum(
        per_entry, ent.face, num_segments=face_shape.shape[0], indices_are_sorted=True
    )
    return dtri, None, None


_log_sum.defvjp(_log_sum_fwd, _log_sum_bwd)


def _soft_one(
    sf: _tiles.ScreenFaces,
    sigma: Array,
    height: int,
    width: int,
    tile: int,
    budget: int,
    cutoff: float,
) -> tuple[Array, Array]:
    """Fast soft silhouette of one image: ([H, W], overflow [])."""
    ent = _tiles.face_entries(sf, height, width, tile, budget, cutoff_radius(sigma, cutoff))
    acc = _log_sum(sf.tri, ent, 1.0 / jax.lax.stop_gradient(sigma), height, width, tile)
    nty, ntx = _tiles.num_tiles(height, width, tile)
    sil = -jnp.expm1(acc).reshape(nty, ntx, tile, tile)  # 1 - exp(Σ log(1 - D))
    return _tiles.untile(sil, height, width), ent.overflow


@functools.partial(jax.jit, static_argnames=("tile", "budget", "cutoff"))
def soft_silhouette(
    vertices: Array,
    faces: Array,
    camera: Camera,
    *,
    sigma: float | Array,
    tile: int = 8,
    budget: int | None = None,
    cutoff: float = CUTOFF,
) -> SoftSilhouette:
    """Soft silhouettes of meshes (SoftRas), evaluated only near each face.

    For each pixel centre p and face f, D = sigmoid(sign · d²/sigma) with d² the squared
    distance (pixels²) from p to the projected triangle's boundary, sign +1 strictly inside
    and -1 otherwise; the silhouette is 1 - Π_f (1 - D), computed as 1 - exp(Σ log(1 - D))
    with log(1 - D) = -softplus(sign · d²/sigma) (finite everywhere). Faces with a vertex at
    z < camera.near (perspective mode; no clipping) contribute nothing.

    Fast path: the image is cut into ``tile`` x ``tile`` tiles. Each face lists the tiles
    that its screen bounding box, grown by the cutoff radius sqrt(sigma · ln(1/cutoff))
    (beyond which D < cutoff), reaches; the (face, tile) pairs of all faces form one flat
    list of static length ``budget`` (pairs beyond it are dropped and counted in
    ``overflow``). Every pair is evaluated on the tile's T² pixels and scatter-added into
    the tile. The selection carries no gradient; the gradient through the evaluated D is
    exact (a custom VJP that recomputes the pairs instead of storing them). Memory grows as
    budget x T² (about pixels x faces-per-pixel), never as pixels x faces. No gradient flows
    to ``sigma``.

    Args:
      vertices: [B, V, 3] in camera coordinates.
      faces: [F, 3] int vertex ids.
      camera: the camera (``height``, ``width`` fix the output size); fields [] or [B].
      sigma: sharpness in pixels² (scalar, may be traced). About 1 blurs the edges over a
        pixel or two; 1e-2 is nearly hard.
      tile: tile side in pixels (static).
      budget: (face, tile) pairs per image (static); ``None``: ``default_budget`` (8 per
        face plus 4 per tile). Time grows with it; ``candidate_count`` gives the need.
      cutoff: the smallest D evaluated (static).

    Returns:
      SoftSilhouette(silhouette [B, H, W], overflow [B] int32).
    """
    vertices, faces, camera = _tiles.check_mesh("soft_silhouette", vertices, faces, camera)
    sigma = jnp.asarray(sigma, vertices.dtype)
    if sigma.ndim != 0:
        raise ValueError(f"soft_silhouette: sigma must be a scalar, got shape {sigma.shape}")
    h, w = camera.height, camera.width
    if budget is None:
        budget = default_budget(faces.shape[0], h, w, tile)

    def one(v, cam):
        sf = _tiles.screen_faces(v, faces, cam)
        return _soft_one(sf, sigma, h, w, tile, budget, cutoff)

    sil, overflow = jax.vmap(one)(vertices, camera)
    return SoftSilhouette(sil, overflow)


@functools.partial(jax.jit, static_argnames=("tile", "cutoff"))
def candidate_count(
    vertices: Array,
    faces: Array,
    camera: Camera,
    *,
    sigma: float | Array,
    tile: int = 8,
    cutoff: float = CUTOFF,
) -> Array:
    """(face, tile) pairs that ``soft_silhouette`` evaluates per image: [B] int32.

    A ``budget`` at least this large gives ``overflow == 0`` for these inputs.
    """
    vertices, faces, camera = _tiles.check_mesh("candidate_count", vertices, faces, camera)
    radius = cutoff_radius(jnp.asarray(sigma, vertices.dtype), cutoff)

    def one(v, cam):
        sf = _tiles.screen_faces(v, faces, cam)
        return _tiles.face_entries(sf, cam.height, cam.width, tile, 1, radius).total

    return jax.vmap(one)(vertices, camera)


@jax.jit
def soft_silhouette_dense(
    vertices: Array, faces: Array, camera: Camera, *, sigma: float | Array
) -> Array:
    """Reference soft silhouette evaluating every pixel-face pair: [B, H, W].

    Same definition as ``soft_silhouette``, written independently and plainly (D itself is
    formed and clamped below 1 before the log; plain autodiff). Memory and time grow as
    pixels x faces: for tests and baselines only.
    """
    vertices, faces, camera = _tiles.check_mesh("soft_silhouette_dense", vertices, faces, camera)
    sigma = jnp.asarray(sigma, vertices.dtype)
    h, w = camera.height, camera.width
    eps = jnp.finfo(vertices.dtype).eps

    def one(v, cam):
        sf = _tiles.screen_faces(v, faces, cam)
        r, c = jnp.meshgrid(
            jnp.arange(h, dtype=v.dtype), jnp.arange(w, dtype=v.dtype), indexing="ij"
        )
        py, px = r.reshape(-1, 1) + 0.5, c.reshape(-1, 1) + 0.5  # [P, 1]
        u = [sf.tri[None, :, i, 0] for i in range(3)]  # [1, F]
        q = [sf.tri[None, :, i, 1] for i in range(3)]
        d2, cross = None, []
        for i in range(3):  # edge from corner i to corner i + 1
            j = (i + 1) % 3
            ex, ey = u[j] - u[i], q[j] - q[i]
            wx, wy = px - u[i], py - q[i]  # [P, F]
            l2 = ex * ex + ey * ey
            t = (wx * ex + wy * ey) / jnp.where(l2 > 0, l2, 1.0)
            t = jnp.clip(jnp.where(l2 > 0, t, 0.0), 0.0, 1.0)
            di = (wx - t * ex) ** 2 + (wy - t * ey) ** 2
            d2 = di if d2 is None else jnp.minimum(d2, di)
            cross.append(ex * wy - ey * wx)
        inside = ((cross[0] > 0) & (cross[1] > 0) & (cross[2] > 0)) | (
            (cross[0] < 0) & (cross[1] < 0) & (cross[2] < 0)
        )
        d = jax.nn.sigmoid(jnp.where(inside, d2, -d2) / sigma)  # [P, F]
        d = jnp.where(sf.valid[None, :], jnp.clip(d, 0.0, 1.0 - eps), 0.0)
        sil = 1.0 - jnp.exp(jnp.sum(jnp.log1p(-d), axis=-1))
        return sil.reshape(h, w)

    return jax.vmap(one)(vertices, camera)
