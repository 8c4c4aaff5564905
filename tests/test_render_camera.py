"""Tests of handfit.render.camera: projection conventions, crops, weak perspective, pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handfit import render


def test_project_follows_opencv_and_pixel_centres():
    cam = render.perspective_camera(500.0, 400.0, 112.0, 100.0, 224, 200)
    pts = jnp.array([[0.0, 0.0, 2.0], [0.1, -0.2, 0.5], [-0.3, 0.3, 1.5]])
    uv = render.project(pts, cam)
    expect = np.stack([500 * pts[:, 0] / pts[:, 2] + 112, 400 * pts[:, 1] / pts[:, 2] + 100], -1)
    np.testing.assert_allclose(uv, expect, rtol=1e-6)
    # A point on the optical axis lands at (cx, cy); cx = c + 0.5 is the centre of column c.
    cam2 = render.perspective_camera(500.0, 500.0, 10.5, 3.5, 16, 16)
    r = render.rasterize(
        jnp.array([[[0, -0.001, 1.0], [0.001, 0.001, 1], [-0.001, 0.001, 1]]]),
        jnp.array([[0, 1, 2]]),
        cam2,
    )
    assert r.face_id[0, 3, 10] == 0 and r.mask.sum() == 1


def test_batched_camera_fields_and_vmap():
    cam = render.perspective_camera(jnp.array([500.0, 250.0]), 500.0, 10.0, 20.0, 32, 32)
    pts = jnp.array([[[0.2, 0.1, 1.0]], [[0.2, 0.1, 1.0]]])
    uv = render.project(pts, cam)
    np.testing.assert_allclose(uv[:, 0, 0], [110.0, 60.0])
    np.testing.assert_allclose(uv[:, 0, 1], [70.0, 70.0])
    leaves, tree = jax.tree_util.tree_flatten(cam)
    assert len(leaves) == 5  # height/width/weak/near are static
    out = jax.vmap(lambda c, p: render.project(p, c), in_axes=(0, 0))(
        render.camera.batch_camera(cam, 2), pts
    )
    np.testing.assert_allclose(out, uv)


def test_crop_resize_maps_pixel_centres():
    cam = render.perspective_camera(300.0, 300.0, 50.0, 40.0, 100, 80)
    crop = render.crop_resize(cam, (10.0, 20.0, 40.0, 30.0), (60, 80))  # x0, y0, w, h
    assert crop.shape == (60, 80)
    pts = jnp.array([[0.05, -0.02, 1.0], [-0.1, 0.07, 2.0]])
    uv, uv2 = render.project(pts, cam), render.project(pts, crop)
    np.testing.assert_allclose(uv2[:, 0], (uv[:, 0] - 10.0) * 80 / 40, rtol=1e-5)
    np.testing.assert_allclose(uv2[:, 1], (uv[:, 1] - 20.0) * 60 / 30, rtol=1e-5)
    # The crop's corner (x0, y0) is continuous coordinate 0 and its far edge is the width.
    np.testing.assert_allclose(
        render.project(jnp.array([[(10 - 50) / 300, (20 - 40) / 300, 1.0]]), crop),
        [[0.0, 0.0]],
        atol=1e-5,
    )
    square = render.crop_resize(cam, (10.0, 20.0, 40.0), 20)
    assert square.shape == (20, 20)
    np.testing.assert_allclose(square.fx, 300.0 / 2)
    half = render.resize(cam, (50, 40))
    np.testing.assert_allclose([half.fx, half.cx, half.cy], [150.0, 25.0, 20.0])


def test_crop_renders_the_same_pixels():
    v = jnp.array([[[-0.3, -0.2, 2.0], [0.35, -0.1, 2.0], [0.0, 0.4, 2.2], [0.3, 0.3, 1.9]]])
    f = jnp.array([[0, 1, 2], [1, 3, 2]])
    cam = render.perspective_camera(100.0, 100.0, 48.0, 44.0, 96, 96)
    full = render.rasterize(v, f, cam)
    crop = render.crop_resize(cam, (24, 16, 48, 40), (40, 48))
    part = render.rasterize(v, f, crop)
    np.testing.assert_array_equal(part.face_id[0], full.face_id[0, 16:56, 24:72])
    s_full = render.soft_silhouette(v, f, cam, sigma=1.0).silhouette
    s_part = render.soft_silhouette(v, f, crop, sigma=1.0).silhouette
    np.testing.assert_allclose(s_part[0], s_full[0, 16:56, 24:72], atol=1e-5)


def test_weak_perspective_matches_perspective_at_reference_depth():
    cam = render.perspective_camera(500.0, 450.0, 60.0, 50.0, 120, 100)
    weak = render.as_weak(cam, 2.0)
    pts = jnp.array([[0.1, 0.2, 2.0], [-0.1, 0.05, 2.0]])
    np.testing.assert_allclose(render.project(pts, weak), render.project(pts, cam), rtol=1e-6)
    # Off the reference plane, weak perspective ignores depth.
    far = pts.at[:, 2].set(4.0)
    np.testing.assert_allclose(render.project(far, weak), render.project(pts, cam), rtol=1e-6)
    w2 = render.weak_perspective_camera(250.0, 60.0, 50.0, 120, 100, scale_y=225.0)
    np.testing.assert_allclose(render.project(far, w2), render.project(pts, cam), rtol=1e-6)
    assert w2.weak and not cam.weak


def test_points_behind_the_camera_stay_finite():
    cam = render.perspective_camera(500.0, 500.0, 50.0, 50.0, 100, 100)
    pts = jnp.array([[0.1, 0.1, 0.0], [0.1, 0.1, -1.0]])
    g = jax.grad(lambda p: render.project(p, cam).sum())(pts)
    assert np.all(np.isfinite(render.project(pts, cam))) and np.all(np.isfinite(g))


def test_shape_errors_name_the_argument():
    cam = render.perspective_camera(500.0, 500.0, 50.0, 50.0, 100, 100)
    with pytest.raises(ValueError, match="points"):
        render.project(jnp.zeros((4, 2)), cam)
    bad = render.perspective_camera(jnp.ones(3), 1.0, 0.0, 0.0, 8, 8)
    with pytest.raises(ValueError, match=r"camera.fx.*\[2\]"):
        render.soft_silhouette(jnp.ones((2, 3, 3)), jnp.array([[0, 1, 2]]), bad, sigma=1.0)
    with pytest.raises(ValueError, match="box"):
        render.crop_resize(cam, (1.0, 2.0), 8)
