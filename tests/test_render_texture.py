"""Tests of handfit.render.texture: colours, Lambert shading, soft alpha, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_render_meshes import sphere

from handfit import render

# A square of side 1 at z = 2, facing the camera (outward normal towards -z).
SQUARE_V = jnp.array(
    [[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [-0.5, 0.5, 2.0]]], jnp.float32
)
SQUARE_F = jnp.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise seen from -z
CAM = render.perspective_camera(40.0, 40.0, 16.0, 16.0, 32, 32)


def test_flat_colour_and_lambert_shading():
    col = jnp.array([0.8, 0.5, 0.2])
    out = render.shade(SQUARE_V, SQUARE_F, jnp.tile(col, (4, 1)), CAM, ambient=0.3, diffuse=0.6)
    m = np.asarray(out.alpha[0]) == 1.0
    assert m.sum() == 20 * 20  # pixels 6..25 (centres 6.5 .. 25.5) in both axes
    np.testing.assert_allclose(out.rgb[0][m], np.tile(col * 0.9, (m.sum(), 1)), rtol=1e-5)
    # Light at 60 degrees from the normal: cos = 1/2.
    tilted = render.shade(
        SQUARE_V,
        SQUARE_F,
        jnp.tile(col, (4, 1)),
        CAM,
        light_dir=(0.0, np.sin(np.pi / 3), -np.cos(np.pi / 3)),
        ambient=0.3,
        diffuse=0.6,
    )
    np.testing.assert_allclose(tilted.rgb[0][m], np.tile(col * 0.6, (m.sum(), 1)), rtol=1e-5)
    # One-sided light from behind: only ambient.
    back = render.shade(
        SQUARE_V,
        SQUARE_F,
        jnp.tile(col, (4, 1)),
        CAM,
        light_dir=(0, 0, 1.0),
        ambient=0.3,
        diffuse=0.6,
        two_sided=False,
    )
    np.testing.assert_allclose(back.rgb[0][m], np.tile(col * 0.3, (m.sum(), 1)), rtol=1e-5)


def test_colours_are_interpolated_perspective_correctly():
    v = SQUARE_V.at[0, 2:, 2].set(3.0)  # slanted: the far edge at z = 3
    colors = jnp.asarray(v[0])  # colour = the 3D position (any linear map works)
    out = render.shade(v, SQUARE_F, colors, CAM, ambient=1.0, diffuse=0.0)
    frags = render.rasterize(v, SQUARE_F, CAM)
    m = np.asarray(frags.mask[0]) > 0
    seen = np.asarray(out.rgb[0])[m]  # the 3D point seen at each pixel
    uv = render.project(jnp.asarray(seen), CAM)
    r, c = np.nonzero(m)
    np.testing.assert_allclose(uv, np.stack([c + 0.5, r + 0.5], -1), atol=1e-3)


def test_soft_edges_and_compositing():
    v, f = sphere(radius=0.4, depth=2.0)
    v = jnp.asarray(v)[None]
    col = jnp.tile(jnp.array([0.2, 0.9, 0.4]), (v.shape[1], 1))
    out = render.shade(v, f, col, CAM, sigma=1.0, ambient=1.0, diffuse=0.0)
    hard = np.asarray(render.rasterize(v, f, CAM).mask[0]) > 0
    alpha = np.asarray(out.alpha[0])
    assert np.all(alpha[hard] == 1.0)
    edge = (~hard) & (alpha > 0.01)
    assert edge.sum() > 10 and np.all(alpha[edge] < 1.0)
    green = np.tile([0.2, 0.9, 0.4], (edge.sum(), 1))
    np.testing.assert_allclose(np.asarray(out.rgb[0])[edge], green, rtol=1e-5)
    bg = jnp.zeros((32, 32, 3)).at[..., 0].set(1.0)
    comp = render.composite(out, bg)
    assert comp.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(comp[0][hard], np.tile([0.2, 0.9, 0.4], (hard.sum(), 1)), rtol=1e-5)
    np.testing.assert_allclose(comp[0][edge][:, 0], 1.0 - 0.8 * alpha[edge], rtol=1e-5)
    assert out.rgba.shape == (1, 32, 32, 4)
    with pytest.raises(ValueError, match="background"):
        render.composite(out, jnp.zeros((16, 16, 3)))


def test_weak_camera_renders_like_perspective_for_a_plane():
    col = jnp.tile(jnp.array([0.8, 0.5, 0.2]), (4, 1))
    a = render.shade(SQUARE_V, SQUARE_F, col, CAM)
    b = render.shade(SQUARE_V, SQUARE_F, col, render.as_weak(CAM, 2.0))
    np.testing.assert_allclose(a.rgb, b.rgb, atol=1e-5)
    np.testing.assert_allclose(a.alpha, b.alpha, atol=1e-5)


def test_gradients_wrt_vertices_and_colours():
    v, f = sphere(radius=0.4, depth=2.0)
    rng = np.random.default_rng(0)
    col = rng.uniform(0.2, 0.8, (v.shape[0], 3))
    bg = rng.uniform(0, 1, (32, 32, 3))
    target = rng.uniform(0, 1, (1, 32, 32, 3))

    def loss(v, c):
        img = render.shade(v, f, c, CAM, light_dir=(0.3, -0.4, -1.0), sigma=1.0)
        return jnp.sum((render.composite(img, bg) - target) ** 2)

    with jax.enable_x64(True):
        v64, c64 = jnp.asarray(v, jnp.float64)[None], jnp.asarray(col, jnp.float64)
        gv, gc = jax.grad(loss, argnums=(0, 1))(v64, c64)
        assert np.all(np.isfinite(gv)) and np.all(np.isfinite(gc))
        assert float(jnp.abs(gv).max()) > 0 and float(jnp.abs(gc).max()) > 0
        for k in range(3):
            dv = jax.random.normal(jax.random.PRNGKey(k), v64.shape, jnp.float64)
            dc = jax.random.normal(jax.random.PRNGKey(k + 10), c64.shape, jnp.float64)
            eps = 1e-7  # small enough that no pixel changes face
            fd = (loss(v64 + eps * dv, c64 + eps * dc) - loss(v64 - eps * dv, c64 - eps * dc)) / (
                2 * eps
            )
            np.testing.assert_allclose(jnp.sum(gv * dv) + jnp.sum(gc * dc), fd, rtol=1e-4)


def test_shape_errors():
    with pytest.raises(ValueError, match="colors"):
        render.shade(SQUARE_V, SQUARE_F, jnp.ones((3, 3)), CAM)
    with pytest.raises(ValueError, match="light_dir"):
        render.shade(SQUARE_V, SQUARE_F, jnp.ones((4, 3)), CAM, light_dir=(0.0, 1.0))
