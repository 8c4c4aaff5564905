"""Tests of handfit.render.soft: fast path vs dense reference, gradients, invariances, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_render_meshes import hand_meshes, sphere

from handfit import render


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _loss(fn, target):
    return lambda v: jnp.sum((fn(v) - target) ** 2)


@pytest.mark.parametrize("weak", [False, True])
def test_fast_matches_dense_on_random_posed_hands(weak):
    verts, faces, _ = hand_meshes(2, seed=1)
    size = 64
    cam = render.perspective_camera(500 * size / 224, 500 * size / 224, 32.0, 32.0, size, size)
    if weak:
        cam = render.as_weak(cam, 0.45)
    sigma = 1.0
    verts = jnp.asarray(verts)
    fast = render.soft_silhouette(verts, faces, cam, sigma=sigma)
    dense = render.soft_silhouette_dense(verts, faces, cam, sigma=sigma)
    assert np.all(np.asarray(fast.overflow) == 0)
    assert float(jnp.mean(dense)) > 0.15  # the hands are in view
    np.testing.assert_allclose(fast.silhouette, dense, atol=1e-3)

    # A silhouette loss against a shifted target: gradients agree.
    target = jnp.roll(dense, 3, axis=2)
    fast_fn = lambda v: render.soft_silhouette(v, faces, cam, sigma=sigma)[0]  # noqa: E731
    dense_fn = lambda v: render.soft_silhouette_dense(v, faces, cam, sigma=sigma)  # noqa: E731
    g_fast = jax.grad(_loss(fast_fn, target))(verts)
    g_dense = jax.grad(_loss(dense_fn, target))(verts)
    assert np.all(np.isfinite(g_fast))
    assert _cosine(g_fast, g_dense) >= 0.999
    np.testing.assert_allclose(np.linalg.norm(g_fast), np.linalg.norm(g_dense), rtol=1e-2)


def test_gradients_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        v = jnp.array(
            [[[-0.31, -0.22, 2.0], [0.27, -0.17, 2.1], [0.03, 0.29, 1.9], [0.33, 0.21, 2.05]]],
            jnp.float64,
        )
        f = jnp.array([[0, 1, 2], [1, 3, 2]])
        cam = render.perspective_camera(40.0, 40.0, 8.0, 8.0, 16, 16)
        w = jax.random.uniform(jax.random.PRNGKey(0), (1, 16, 16), jnp.float64)

        def loss_fast(v):
            return jnp.sum(w * render.soft_silhouette(v, f, cam, sigma=2.0, tile=4).silhouette)

        def loss_dense(v):
            return jnp.sum(w * render.soft_silhouette_dense(v, f, cam, sigma=2.0))

        assert loss_fast(v).dtype == jnp.float64
        np.testing.assert_allclose(loss_fast(v), loss_dense(v), rtol=1e-4)
        g = jax.grad(loss_fast)(v)
        np.testing.assert_allclose(g, jax.grad(loss_dense)(v), rtol=1e-4, atol=1e-7)
        for k in range(4):
            d = jax.random.normal(jax.random.PRNGKey(k + 1), v.shape, jnp.float64)
            eps = 1e-6
            fd = (loss_fast(v + eps * d) - loss_fast(v - eps * d)) / (2 * eps)
            np.testing.assert_allclose(jnp.sum(g * d), fd, rtol=1e-4)


def test_one_pixel_shift_shifts_the_silhouette():
    v, f = sphere(radius=0.4, depth=2.0)
    v = jnp.asarray(v)[None]
    cam = render.perspective_camera(60.0, 60.0, 16.0, 16.0, 32, 40)
    base = render.soft_silhouette(v, f, cam, sigma=0.8).silhouette[0]
    # Moving every vertex by one pixel along u (dx = z / fx) moves the image one column.
    moved = v.at[..., 0].add(v[..., 2] / 60.0)
    right = render.soft_silhouette(moved, f, cam, sigma=0.8).silhouette[0]
    np.testing.assert_allclose(right[:, 1:], base[:, :-1], atol=2e-5)
    assert float(jnp.abs(right - base).max()) > 0.3
    # And one row down through the camera: cy + 1.
    down_cam = render.perspective_camera(60.0, 60.0, 16.0, 17.0, 32, 40)
    down = render.soft_silhouette(v, f, down_cam, sigma=0.8).silhouette[0]
    np.testing.assert_allclose(down[1:], base[:-1], atol=1e-4)  # rounding of cy


def test_gradients_reach_vertices_from_pixels_outside():
    v, f = sphere(radius=0.4, depth=2.0)
    v = jnp.asarray(v)[None]
    cam = render.perspective_camera(60.0, 60.0, 16.0, 16.0, 32, 32)
    outside = 1.0 - render.rasterize(v, f, cam).mask
    g = jax.grad(lambda v: jnp.sum(outside * render.soft_silhouette(v, f, cam, sigma=1.0)[0]))(v)
    # The loss only sees background pixels; growing the sphere raises it.
    radial = v - jnp.array([0.0, 0.0, 2.0])
    assert float(jnp.sum(g * radial)) > 0


def test_batch_order_does_not_change_results():
    verts, faces, _ = hand_meshes(3, seed=2)
    cam = render.perspective_camera(
        jnp.array([200.0, 180.0, 220.0]), 200.0, jnp.array([24.0, 20.0, 26.0]), 24.0, 48, 48
    )
    perm = np.array([2, 0, 1])
    out = render.soft_silhouette(verts, faces, cam, sigma=0.5).silhouette
    cam_p = render.perspective_camera(cam.fx[perm], 200.0, cam.cx[perm], 24.0, 48, 48)
    out_p = render.soft_silhouette(verts[perm], faces, cam_p, sigma=0.5).silhouette
    np.testing.assert_allclose(out_p, out[perm], atol=1e-6)
    assert float(jnp.abs(out[0] - out[1]).max()) > 0.1


def test_under_vmap_equals_the_batch_call():
    # Under vmap the renderer's stored-once intermediates become selects; results must not move.
    verts, faces, _ = hand_meshes(2, seed=3)
    cam = render.perspective_camera(200.0, 200.0, 24.0, 24.0, 48, 48)
    target = jnp.zeros((48, 48)).at[10:30, 12:40].set(1.0)

    def loss(v):  # v: [V, 3]
        s = render.soft_silhouette(v[None], faces, cam, sigma=1.0).silhouette[0]
        return jnp.sum((s - target) ** 2)

    batch = jax.vmap(jax.value_and_grad(loss))(jnp.asarray(verts))
    sil = render.soft_silhouette(verts, faces, cam, sigma=1.0).silhouette
    one = [jax.value_and_grad(loss)(verts[i]) for i in range(2)]
    np.testing.assert_allclose(batch[0], [float(o[0]) for o in one], rtol=1e-5)
    np.testing.assert_allclose(batch[1], np.stack([o[1] for o in one]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jnp.sum((sil - target) ** 2, axis=(1, 2)), batch[0], rtol=1e-5)


@pytest.mark.parametrize("size", [3, 8])
def test_windows_cover_each_face_box_once(size):
    from handfit.render import _tiles

    rng = np.random.default_rng(size)
    tri = jnp.asarray(rng.uniform(-4, 30, (40, 3, 2)), jnp.float32)
    valid = jnp.asarray(rng.uniform(size=40) > 0.1)
    sf = _tiles.ScreenFaces(tri, jnp.zeros((40, 3)), valid)
    radius = jnp.float32(1.5)
    win = _tiles.face_windows(sf, 24, 20, size, 2000, radius)
    assert int(win.overflow) == 0 and int(win.total) == int(np.sum(win.used))
    face, top, left = (np.asarray(a)[np.asarray(win.used)] for a in win[:3])
    assert np.all(np.diff(face) >= 0)  # sorted by face
    for f in range(40):
        covered = [
            (y, x)
            for k in np.flatnonzero(face == f)
            for y in range(top[k], top[k] + size)
            for x in range(left[k], left[k] + size)
        ]
        assert len(covered) == len(set(covered)), f"face {f}: a pixel listed twice"
        lo = np.asarray(tri[f]).min(0) - 1.5
        hi = np.asarray(tri[f]).max(0) + 1.5
        want = {
            (y, x)
            for y in range(24)
            for x in range(20)
            if lo[1] <= y + 0.5 <= hi[1] and lo[0] <= x + 0.5 <= hi[0]
        }
        if not bool(valid[f]):
            want = set()
        assert want <= set(covered), f"face {f}: box pixels missed"
        assert bool(want) == bool(covered), f"face {f}: windows without box pixels"


def test_overflow_is_counted_never_silent():
    verts, faces, _ = hand_meshes(1, seed=4)
    cam = render.perspective_camera(200.0, 200.0, 24.0, 24.0, 48, 48)
    need = int(render.candidate_count(verts, faces, cam, sigma=1.0)[0])
    small = render.soft_silhouette(verts, faces, cam, sigma=1.0, budget=need - 100)
    assert int(small.overflow[0]) == 100
    exact = render.soft_silhouette(verts, faces, cam, sigma=1.0, budget=need)
    assert int(exact.overflow[0]) == 0
    dense = render.soft_silhouette_dense(verts, faces, cam, sigma=1.0)
    np.testing.assert_allclose(exact.silhouette, dense, atol=1e-3)
    assert float(jnp.abs(small.silhouette - dense).max()) > 1e-3  # dropped faces show


def test_bad_input_gives_finite_values_and_gradients():
    cam = render.perspective_camera(10.0, 10.0, 8.0, 8.0, 16, 16)
    # Corners exactly on pixel centres (u = c + 0.5) and on pixel edges (integers), at z = 1.
    on_grid = [
        [-0.45, -0.45, 1.0],
        [0.35, -0.45, 1.0],
        [-0.45, 0.35, 1.0],
        [-0.3, -0.3, 1.0],
        [0.2, -0.3, 1.0],
        [-0.3, 0.5, 1.0],
    ]
    degenerate = [[0.1, 0.1, 1.0], [0.1, 0.1, 1.0], [0.3, 0.2, 1.0]]  # zero area
    behind = [[0.0, 0.0, 0.0], [0.2, 0.0, -1.0], [0.0, 0.2, 1e-5]]  # behind / on the camera
    v = jnp.array([on_grid + degenerate + behind], jnp.float32)
    f = jnp.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [6, 6, 6], [9, 10, 11], [0, 9, 1]])
    for fn in (
        lambda v: render.soft_silhouette(v, f, cam, sigma=0.5).silhouette,
        lambda v: render.soft_silhouette_dense(v, f, cam, sigma=0.5),
        lambda v: render.rasterize(v, f, cam).depth,
        lambda v: render.rasterize(v, f, cam).bary,
    ):
        out = fn(v)
        g = jax.grad(lambda v, fn=fn: jnp.sum(fn(v) ** 2))(v)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    # Faces touching a vertex behind the near plane contribute nothing.
    with_behind = render.soft_silhouette(v, f, cam, sigma=0.5).silhouette
    without = render.soft_silhouette(v, f[:4], cam, sigma=0.5).silhouette
    np.testing.assert_array_equal(with_behind, without)


def _two_triangles_and_a_bad_one():
    """A 16² camera, vertices [1, 9, 3] of three faces [3, 3]: two in view, the last (the one
    unused budget slots point at) touching vertex 6 alone."""
    cam = render.perspective_camera(40.0, 40.0, 8.0, 8.0, 16, 16)
    v = jnp.array(
        [
            [
                [-0.1, -0.08, 2.0],
                [0.1, -0.08, 2.0],
                [0.0, 0.12, 2.0],
                [0.14, 0.1, 2.05],
                [0.05, 0.05, 2.0],
                [0.12, 0.04, 2.0],
                [0.08, 0.1, 2.0],
            ]
        ],
        jnp.float32,
    )
    f = jnp.array([[0, 1, 2], [1, 3, 2], [4, 5, 6]])
    return cam, v, f


@pytest.mark.parametrize(
    "value", [1e20, 1e12, np.nan, np.inf], ids=["1e20m", "1e12m", "nan", "inf"]
)
def test_a_nan_or_far_vertex_drops_its_face_and_nothing_else(value):
    cam, v, f = _two_triangles_and_a_bad_one()
    bad = v.at[0, 6, 0].set(value)  # 1e20 m at z = 2 m: u ~ 2e21 px, beyond float32 d²

    def silhouette(v, faces):
        return render.soft_silhouette(v, faces, cam, sigma=1.0, tile=4).silhouette

    def grad(v, faces):
        return jax.grad(lambda v: jnp.sum(silhouette(v, faces) ** 2))(v)

    out, g = silhouette(bad, f), grad(bad, f)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    # As if the bad face were not there; its vertices get no gradient.
    np.testing.assert_allclose(out, silhouette(v, f[:2]), atol=1e-6)
    np.testing.assert_allclose(g[0, :4], grad(v, f[:2])[0, :4], atol=1e-6)
    np.testing.assert_array_equal(g[0, 4:], 0.0)


def test_sigma_zero_is_a_hard_edge_with_finite_gradients():
    cam, v, f = _two_triangles_and_a_bad_one()

    def loss(v, sigma):
        return jnp.sum(render.soft_silhouette(v, f, cam, sigma=sigma, tile=4).silhouette ** 2)

    for sigma in (0.0, -1.0):
        g = jax.grad(loss)(v, sigma)
        assert np.all(np.isfinite(g)), sigma
        np.testing.assert_array_equal(loss(v, sigma), loss(v, render.soft.SIGMA_MIN))
    hard = render.rasterize(v, f, cam).mask
    soft = render.soft_silhouette(v, f, cam, sigma=0.0, tile=4).silhouette
    assert np.mean(np.abs(np.asarray(soft) - np.asarray(hard))) < 0.01


def test_traces_once_for_equal_shapes():
    v, f = sphere()
    cam = render.perspective_camera(40.0, 40.0, 12.0, 12.0, 24, 24)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(v, sigma):
        return jax.grad(lambda v: jnp.sum(render.soft_silhouette(v, f, cam, sigma=sigma)[0]))(v)

    step(jnp.asarray(v)[None], 1.0)
    step(jnp.asarray(v)[None] * 1.1, 0.5)  # new values, traced sigma: no retrace


def test_shape_errors_at_trace_time():
    cam = render.perspective_camera(40.0, 40.0, 12.0, 12.0, 24, 24)
    v, f = sphere()
    with pytest.raises(ValueError, match=r"vertices must have shape \[B, V, 3\]"):
        render.soft_silhouette(v, f, cam, sigma=1.0)
    with pytest.raises(ValueError, match=r"faces must have shape \[F, 3\]"):
        render.soft_silhouette(v[None], f[:, :2], cam, sigma=1.0)
    with pytest.raises(ValueError, match="faces must be integer"):
        render.soft_silhouette(v[None], f.astype(np.float32), cam, sigma=1.0)
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        render.soft_silhouette(v[None], f, cam, sigma=jnp.ones(2))
