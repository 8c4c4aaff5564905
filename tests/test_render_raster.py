"""Tests of handfit.render.raster against an independent NumPy z-buffer, and vs soft masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_render_meshes import hand_meshes

from handfit import render


def _random_triangles(seed, n=10):
    rng = np.random.default_rng(seed)
    centres = rng.uniform([-0.5, -0.4, 1.5], [0.5, 0.4, 2.5], (n, 1, 3))
    tri = centres + rng.normal(0, 0.25, (n, 3, 3)) * np.array([1, 1, 0.3])
    return tri.reshape(1, -1, 3).astype(np.float32), np.arange(3 * n).reshape(n, 3)


def _cross2(a, b):
    return a[0] * b[1] - a[1] * b[0]


def _numpy_zbuffer(tri, fx, fy, cx, cy, h, w, weak_depth=None):
    """Reference: closed point-in-triangle by signed areas and ray-plane depth, per pixel."""
    verts = tri.astype(np.float64)
    if weak_depth is None:
        uv = np.stack(
            [fx * verts[..., 0] / verts[..., 2] + cx, fy * verts[..., 1] / verts[..., 2] + cy], -1
        )
    else:
        uv = np.stack(
            [fx * verts[..., 0] / weak_depth + cx, fy * verts[..., 1] / weak_depth + cy], -1
        )
    face = -np.ones((h, w), int)
    depth = np.full((h, w), np.inf)
    for r in range(h):
        for c in range(w):
            p = np.array([c + 0.5, r + 0.5])
            for k, (t2, t3) in enumerate(zip(uv, verts, strict=True)):
                s = [_cross2(t2[(i + 1) % 3] - t2[i], p - t2[i]) for i in range(3)]
                area = _cross2(t2[1] - t2[0], t2[2] - t2[0])
                if area == 0 or not (min(s) >= 0 or max(s) <= 0):
                    continue
                n = np.cross(t3[1] - t3[0], t3[2] - t3[0])
                if weak_depth is None:  # ray through the pixel centre
                    d = np.array([(p[0] - cx) / fx, (p[1] - cy) / fy, 1.0])
                    z = n @ t3[0] / (n @ d)
                else:  # orthographic ray at (x, y)
                    x, y = (p[0] - cx) * weak_depth / fx, (p[1] - cy) * weak_depth / fy
                    z = (n @ t3[0] - n[0] * x - n[1] * y) / n[2]
                if z < depth[r, c]:
                    depth[r, c], face[r, c] = z, k
    return face, np.where(face >= 0, depth, 0.0)


@pytest.mark.parametrize("weak", [False, True])
def test_matches_numpy_point_in_triangle_and_zbuffer(weak):
    tri, faces = _random_triangles(0)
    h, w = 30, 37  # not multiples of the tile
    fx, fy, cx, cy = 45.0, 42.0, 18.0, 15.5
    cam = render.perspective_camera(fx, fy, cx, cy, h, w)
    if weak:
        cam = render.as_weak(cam, 2.0)
    ref_face, ref_depth = _numpy_zbuffer(tri[0][faces], fx, fy, cx, cy, h, w, 2.0 if weak else None)
    out = render.rasterize(jnp.asarray(tri), faces, cam)
    assert int(out.overflow[0]) == 0
    assert 0.2 < (ref_face >= 0).mean() < 0.9
    np.testing.assert_array_equal(out.mask[0], ref_face >= 0)
    np.testing.assert_array_equal(out.face_id[0], ref_face)
    np.testing.assert_allclose(out.depth[0], ref_depth, rtol=1e-5)


def test_barycentrics_are_perspective_correct():
    tri, faces = _random_triangles(1)
    h, w = 24, 24
    cam = render.perspective_camera(25.0, 25.0, 12.0, 12.0, h, w)
    out = render.rasterize(jnp.asarray(tri), faces, cam)
    point = render.interpolate(out, faces, jnp.asarray(tri))[0]  # 3D point seen, [H, W, 3]
    m = np.asarray(out.mask[0]) > 0
    uv = render.project(point[m], cam)
    r, c = np.nonzero(m)
    np.testing.assert_allclose(uv, np.stack([c + 0.5, r + 0.5], -1), atol=1e-3)
    np.testing.assert_allclose(point[m][:, 2], out.depth[0][m], rtol=1e-5)
    np.testing.assert_allclose(out.bary[0].sum(-1), m.astype(np.float32), atol=1e-5)
    assert np.all(out.bary[0][m] >= -1e-5)


def test_depth_and_bary_gradients_are_finite_and_correct():
    tri, faces = _random_triangles(2, n=3)
    cam = render.perspective_camera(20.0, 20.0, 8.0, 8.0, 16, 16)
    v = jnp.asarray(tri)

    def loss(v):
        out = render.rasterize(v, faces, cam)
        return jnp.sum(out.depth) + jnp.sum(out.bary[..., 0] ** 2)

    g = jax.grad(loss)(v)
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0
    d = jax.random.normal(jax.random.PRNGKey(0), v.shape) * 1e-3  # small: no face switches
    with jax.enable_x64(True):
        v64, d64 = jnp.asarray(tri, jnp.float64), jnp.asarray(d, jnp.float64)
        g64 = jax.grad(loss)(v64)
        fd = (loss(v64 + 1e-4 * d64) - loss(v64 - 1e-4 * d64)) / 2e-4
        np.testing.assert_allclose(jnp.sum(g64 * d64), fd, rtol=1e-5)


def test_mask_agrees_with_soft_silhouette_at_small_sigma():
    verts, faces, _ = hand_meshes(2, seed=5)
    cam = render.perspective_camera(500.0, 500.0, 112.0, 112.0, 224, 224)
    hard = render.rasterize(verts, faces, cam)
    soft = render.soft_silhouette(verts, faces, cam, sigma=0.01)
    assert np.all(np.asarray(hard.overflow) == 0) and np.all(np.asarray(soft.overflow) == 0)
    a, b = np.asarray(hard.mask) > 0, np.asarray(soft.silhouette) > 0.5
    iou = (a & b).sum((1, 2)) / (a | b).sum((1, 2))
    assert np.all(iou >= 0.98), iou
    assert a.mean() > 0.1


def test_batch_order_and_interpolate_shapes():
    verts, faces, _ = hand_meshes(3, seed=6)
    cam = render.perspective_camera(200.0, 200.0, 24.0, 24.0, 48, 48)
    out = render.rasterize(verts, faces, cam)
    perm = np.array([1, 2, 0])
    out_p = render.rasterize(verts[perm], faces, cam)
    for a, b in zip(out_p, out, strict=True):
        np.testing.assert_allclose(a, np.asarray(b)[perm], atol=1e-6)
    col = render.interpolate(out, faces, jnp.ones((verts.shape[1], 3)))
    np.testing.assert_allclose(col[..., 0], out.mask, atol=1e-5)
    with pytest.raises(ValueError, match="attributes"):
        render.interpolate(out, faces, jnp.ones((2, verts.shape[1], 3)))
