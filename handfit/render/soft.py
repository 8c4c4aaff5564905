"""Soft silhouettes after SoftRas (Liu et al. 2019): a tiled fast path and a dense reference."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handfit.render import _tiles
from handfit.render.camera import Camera

Array = jax.Array

# Default: a face is evaluated at a pixel only where its probability D can exceed this.
CUTOFF = 1e-4
# Smaller sigmas (0 and negative ones included) are taken as this: a hard edge, finite gradients.
SIGMA_MIN = 1e-6


class SoftSilhouette(NamedTuple):
    """Result of ``soft_silhouette``.

    silhouette: [B, H, W] float in [0, 1].
    overflow: [B] int32, the number of (face, window) pairs dropped because the
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
    """Default number of (face, window) pairs per image: 8 per face plus 4 per tile of the image.

    Enough for a ~1500-face hand filling a 224² image at sigma <= 1.5 with 8² windows (it
    needs ~10.9k pairs there, ~6.5k at 112², ~5k at 64²). Time grows with the budget: hot
    loops should pass ``candidate_count`` of typical inputs plus a margin.
    """
    nty, ntx = _tiles.num_tiles(height, width, tile)
    return 8 * num_faces + 4 * nty * ntx


def _materialize(fn: Callable, *args):
    """``fn(*args)``, its results computed once and kept in memory.

    XLA's CPU fusion copies cheap elementwise work into every fusion that reads it, so
    without this the edge distances behind ``x`` and ``e`` below would be recomputed by each
    of their consumers (about 2x the renderer's time). The results of a conditional are
    buffers: both branches are ``fn`` and the predicate only has to be unknown at compile
    time. Other platforms get plain ``fn``. Under an outer ``vmap`` the conditional becomes
    a select of two identical branches: still correct, only this saving is lost.
    """

    def on_cpu(*a):
        pred = jnp.ravel(jax.tree.leaves(a)[0])[0] > 0
        return jax.lax.cond(pred, fn, fn, *a)

    return jax.lax.platform_dependent(*args, cpu=on_cpu, default=fn)


class _Pairs(NamedTuple):
    """(face, window) pairs of a whole batch, flattened: P = B x budget."""

    face: Array  # [P] int32 row of the flattened faces [B * F]
    image: Array  # [P] int32 image of the pair
    top: Array  # [P] int32 first pixel row of the window
    left: Array  # [P] int32 first pixel column
    used: Array  # [P] bool


def _edge_data(tri: Array, face: Array) -> list[tuple[Array, ...]]:
    """Per edge i (corner i to i + 1) of each pair's face: (ax, ay, ex, ey, 1/|e|²), [P, 1, 1].

    ``tri``: [B * F, 3, 2] corners; the inverse is 0 for a degenerate edge.
    """
    g = tri[face][:, :, :, None, None]  # [P, 3, 2, 1, 1]
    out = []
    for i in range(3):
        a, b = g[:, i], g[:, (i + 1) % 3]
        ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        l2 = ex * ex + ey * ey
        ok = l2 > 0
        out.append((a[:, 0], a[:, 1], ex, ey, jnp.where(ok, 1.0 / jnp.where(ok, l2, 1.0), 0.0)))
    return out


def _closest(py: Array, px: Array, edge: tuple[Array, ...]) -> tuple[Array, Array, Array]:
    """(t, rx, ry): the clamped projection parameter of pixel p on edge a -> a + e, and the
    residual r = p - (a + t e); the gradient is taken with t fixed (exact, as t is the
    minimiser of |r|²)."""
    ax, ay, ex, ey, inv = edge
    wx, wy = px - ax, py - ay
    t = jax.lax.stop_gradient(jnp.clip((wx * ex + wy * ey) * inv, 0.0, 1.0))
    return t, wx - t * ex, wy - t * ey


def _nearest_edge(tri: Array, pairs: _Pairs, size: int) -> tuple[Array, Array]:
    """sign · d² per window pixel [P, S, S] (pixels²) and the nearest edge e [P, S, S] int8.

    d² is the squared distance to the face's boundary, sign +1 strictly inside and -1
    otherwise (so D = sigmoid(sign · d²/sigma) is 1/2 on an edge from both sides).
    """
    py, px = _tiles.block_pixels(pairs.top, pairs.left, size, tri.dtype)
    d2, cross = [], []
    for ax, ay, ex, ey, inv in _edge_data(tri, pairs.face):
        _, rx, ry = _closest(py, px, (ax, ay, ex, ey, inv))
        d2.append(rx * rx + ry * ry)
        cross.append(ex * (py - ay) - ey * (px - ax))
    dmin = jnp.minimum(jnp.minimum(d2[0], d2[1]), d2[2])
    c0, c1, c2 = cross
    inside = ((c0 > 0) & (c1 > 0) & (c2 > 0)) | ((c0 < 0) & (c1 < 0) & (c2 < 0))
    first = (d2[0] <= d2[1]) & (d2[0] <= d2[2])
    e = jnp.where(first, 0, jnp.where(d2[1] <= d2[2], 1, 2)).astype(jnp.int8)
    return jnp.where(inside, dmin, -dmin), e


_SCATTER = jax.lax.ScatterDimensionNumbers(
    update_window_dims=(1, 2), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0, 1, 2)
)
_GATHER = jax.lax.GatherDimensionNumbers(
    offset_dims=(1, 2), collapsed_slice_dims=(0,), start_index_map=(0, 1, 2)
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _transmission(tri: Array, pairs: _Pairs, sigma: Array, shape: tuple[int, int, int, int]):
    """Π_faces (1 - D) per pixel: [B, H + S - 1, W + S - 1]; shape = (B, H, W, S).

    Gradient to ``tri`` [B * F, 3, 2] only.
    """
    return _transmission_fwd(tri, pairs, sigma, shape)[0]


def _transmission_fwd(tri, pairs, sigma, shape):
    b, h, w, size = shape
    # sigma stays outside the stored-once part: inside shard_map + vmap, JAX cannot batch a
    # conditional that mixes per-device and replicated operands.
    signed, e = _materialize(functools.partial(_nearest_edge, size=size), tri, pairs)
    x = jnp.where(pairs.used[:, None, None], signed / sigma, -100.0)  # unused pairs: D = 0
    index = jnp.stack([pairs.image, pairs.top, pairs.left], -1)
    canvas = jnp.ones((b, h + size - 1, w + size - 1), x.dtype)
    canvas = jax.lax.scatter_mul(
        canvas, index, 1.0 / (1.0 + jnp.exp(x)), _SCATTER, mode="promise_in_bounds"
    )
    return canvas, (tri, pairs, sigma, x, e, canvas)


def _transmission_bwd(shape, res, g):
    """Exact vertex gradient. With T = Π (1 - D): d log T / dx = -D per pair and pixel,
    dx/dd² = sign/sigma, and for the nearest edge (a, b) with closest point a + t (b - a)
    and r = p - that point: dd²/da = -2 (1 - t) r, dd²/db = -2 t r."""
    tri, pairs, sigma, x, e, canvas = res
    size = shape[3]
    index = jnp.stack([pairs.image, pairs.top, pairs.left], -1)

    def slope(x, g_log):  # sigma · dL/dd² [P, S, S]
        g_log = jax.lax.gather(g_log, index, _GATHER, (1, size, size), mode="promise_in_bounds")
        d = 1.0 / (1.0 + jnp.exp(-x))
        return jnp.where(x > 0, -g_log, g_log) * d  # x = -100 (unused): d = 0

    k = _materialize(slope, x, g * canvas) / sigma  # g · T = dL/d log T
    py, px = _tiles.block_pixels(pairs.top, pairs.left, size, tri.dtype)
    edges = _edge_data(tri, pairs.face)
    near = [e == i for i in range(3)]
    pick = [
        jnp.where(near[0], edges[0][m], jnp.where(near[1], edges[1][m], edges[2][m]))
        for m in range(5)
    ]
    t, rx, ry = _closest(py, px, tuple(pick))
    kb = -2.0 * k * t  # dL/db = kb r
    ka = -2.0 * k - kb  # dL/da = ka r
    sums = []
    for c in range(3):  # corner c starts edge c and ends edge c - 1
        wc = jnp.where(near[c], ka, 0.0) + jnp.where(near[(c + 2) % 3], kb, 0.0)
        sums += [jnp.sum(wc * rx, axis=(1, 2)), jnp.sum(wc * ry, axis=(1, 2))]
    per_pair = jnp.stack(sums, -1).reshape(-1, 3, 2)
    dtri = jax.ops.segment_sum(
        per_pair, pairs.face, num_segments=tri.shape[0], indices_are_sorted=True
    )
    return dtri, None, None


_transmission.defvjp(_transmission_fwd, _transmission_bwd)


def _pairs(vertices, faces, camera, sigma, tile, budget, cutoff):
    """Screen faces of every image (fields [B, ...]) and their windows, flattened:
    (ScreenFaces, _Pairs, total [B], overflow [B])."""
    h, w = camera.height, camera.width
    sf = jax.vmap(lambda v, cam: _tiles.screen_faces(v, faces, cam))(vertices, camera)
    radius = cutoff_radius(sigma, cutoff)
    win = jax.vmap(lambda s: _tiles.face_windows(s, h, w, tile, budget, radius))(sf)
    b, f = sf.valid.shape
    image = jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None], win.face.shape)
    pairs = _Pairs(
        (win.face + image * f).reshape(-1),
        image.reshape(-1),
        win.top.reshape(-1),
        win.left.reshape(-1),
        win.used.reshape(-1),
    )
    return sf, pairs, win.total, win.overflow


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
    and -1 otherwise; the silhouette is 1 - Π_f (1 - D), with 1 - D = 1 / (1 + exp(sign ·
    d²/sigma)) (no logarithm needed; far inside a face the product reaches 0 and the
    silhouette 1). Faces with a vertex at z < camera.near (perspective mode; no clipping),
    a NaN or inf vertex, or a corner projected beyond ``_tiles.MAX_PIXELS`` (1e6 px)
    contribute nothing and get no gradient; the other faces' values and gradients stay finite.

    Fast path: each face's screen bounding box, grown by the cutoff radius
    sqrt(sigma · ln(1/cutoff)) (beyond which D < cutoff), is covered by ``tile`` x ``tile``
    pixel windows anchored at the box's top-left pixel (one window for most faces of a hand
    at 112²). The (face, window) pairs of all faces form one flat list of static length
    ``budget`` per image (pairs beyond it are dropped and counted in ``overflow``). Every
    pair is evaluated on its window's pixels and multiplied into the image. The selection
    carries no gradient; the gradient through the evaluated D is exact (a custom VJP that
    keeps only the signed distances and nearest edges). Memory grows as budget x tile²
    (about pixels x faces-per-pixel), never as pixels x faces. No gradient flows to
    ``sigma``. Call it on a batch rather than under ``vmap`` (see ``_materialize``).

    Args:
      vertices: [B, V, 3] in camera coordinates.
      faces: [F, 3] int vertex ids.
      camera: the camera (``height``, ``width`` fix the output size); fields [] or [B].
      sigma: sharpness in pixels² (scalar, may be traced). About 1 blurs the edges over a
        pixel or two; 1e-2 is nearly hard. Values below ``SIGMA_MIN`` (1e-6; 0 included)
        are taken as ``SIGMA_MIN``.
      tile: side of the pixel windows (static).
      budget: (face, window) pairs per image (static); ``None``: ``default_budget`` (8 per
        face plus 4 per tile of the image). Time grows with it; ``candidate_count`` gives
        the need.
      cutoff: the smallest D evaluated (static).

    Returns:
      SoftSilhouette(silhouette [B, H, W], overflow [B] int32).
    """
    vertices, faces, camera = _tiles.check_mesh("soft_silhouette", vertices, faces, camera)
    sigma = jnp.asarray(sigma, vertices.dtype)
    if sigma.ndim != 0:
        raise ValueError(f"soft_silhouette: sigma must be a scalar, got shape {sigma.shape}")
    sigma = jnp.maximum(sigma, SIGMA_MIN)  # sigma = 0 would divide by 0 (NaN gradients)
    b, h, w = vertices.shape[0], camera.height, camera.width
    if budget is None:
        budget = default_budget(faces.shape[0], h, w, tile)
    sf, pairs, _, overflow = _pairs(vertices, faces, camera, sigma, tile, budget, cutoff)
    tri = sf.tri.reshape(-1, 3, 2)
    canvas = _transmission(tri, pairs, jax.lax.stop_gradient(sigma), (b, h, w, tile))
    return SoftSilhouette(1.0 - canvas[:, :h, :w], overflow)


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
    """(face, window) pairs that ``soft_silhouette`` evaluates per image: [B] int32.

    A ``budget`` at least this large gives ``overflow == 0`` for these inputs.
    """
    vertices, faces, camera = _tiles.check_mesh("candidate_count", vertices, faces, camera)
    sigma = jnp.asarray(sigma, vertices.dtype)
    return _pairs(vertices, faces, camera, sigma, tile, 1, cutoff)[2]


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
