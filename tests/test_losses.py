"""Tests of handfit.losses on hand-computed cases, invariances and degenerate inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handfit import geometry, losses, mano, params, skeleton

J = skeleton.NUM_JOINTS


def _visible_except(b, *hidden):
    v = np.ones((b, J), np.float32)
    for i in hidden:
        v[:, i] = 0.0
    return jnp.asarray(v)


def test_feature_loss_hand_computed():
    f = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    assert losses.feature_loss(features=f, masked_features=jnp.zeros_like(f)) == pytest.approx(1.25)


def test_mask_loss_is_the_cross_entropy_of_the_examples_with_a_mask():
    logits = jnp.array([[[2.0, -1.0]], [[0.5, 3.0]], [[9.0, 9.0]]])  # [3, 1, 2]
    masks = jnp.array([[[1.0, 0.25]], [[0.0, 1.0]], [[0.0, 0.0]]])
    has_mask = jnp.array([1, 1, 0])
    p = 1 / (1 + np.exp(-np.asarray(logits[:2])))
    m = np.asarray(masks[:2])
    want = np.mean(-(m * np.log(p) + (1 - m) * np.log(1 - p)))  # the third is left out
    got = losses.mask_loss(logits=logits, masks=masks, has_mask=has_mask)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_heatmap_loss_masks_invisible_joints_and_sums_stages():
    targets = jnp.zeros((1, 2, 2, J))
    pred = np.zeros((1, 2, 2, J), np.float32)
    pred[..., 0] = 1.0  # visible, error 1 per pixel
    pred[..., 1] = 3.0  # invisible: must not count
    pred = jnp.asarray(pred)
    vis = _visible_except(1, 1)
    one = losses.heatmap_loss(heatmaps=pred, targets=targets, visible=vis)
    assert one == pytest.approx(4.0 / (20 * 4))
    stages = jnp.stack([pred, 2 * pred])  # second stage: error 4 per pixel of map 0
    both = losses.heatmap_loss(heatmaps=stages, targets=targets, visible=vis)
    assert both == pytest.approx(4.0 / 80 + 16.0 / 80)
    all_vis = losses.heatmap_loss(heatmaps=pred, targets=targets)
    assert all_vis == pytest.approx((4.0 + 36.0) / (21 * 4))


def test_heatmap_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        losses.heatmap_loss(heatmaps=jnp.zeros((1, 4, 4, J)), targets=jnp.zeros((1, 2, 2, J)))


def test_heatmap_ce_loss_is_the_cross_entropy_of_each_visible_map():
    rng = np.random.default_rng(0)
    targets = rng.random((2, 3, 3, J)).astype(np.float32)
    targets[1, ..., 5] = 0.0  # a joint without a target (invisible in the pipeline)
    vis = np.ones((2, J), bool)
    vis[0, 2] = False
    logits = rng.normal(size=(2, 3, 3, J)).astype(np.float32)
    # by hand: softmax over the 9 cells, target normalised to sum 1
    prob = np.exp(logits) / np.exp(logits).sum((1, 2), keepdims=True)
    norm = targets / np.maximum(targets.sum((1, 2), keepdims=True), 1e-12)
    ce = -(norm * np.log(prob)).sum((1, 2))  # [2, J]
    counted = vis & (targets.sum((1, 2)) > 0)
    expected = ce[counted].mean()
    loss = losses.heatmap_ce_loss(heatmaps=jnp.asarray(logits), targets=targets, visible=vis)
    assert loss == pytest.approx(expected, rel=1e-5)
    # stages add; the minimum is at log(target), where the loss is the target's entropy
    both = losses.heatmap_ce_loss(
        heatmaps=jnp.stack([logits, logits]), targets=targets, visible=vis
    )
    assert both == pytest.approx(2 * expected, rel=1e-5)
    best = jnp.log(jnp.asarray(norm) + 1e-30)
    grad = jax.grad(lambda h: losses.heatmap_ce_loss(heatmaps=h, targets=targets, visible=vis))
    entropy = -(norm * np.log(norm + 1e-30)).sum((1, 2))[counted].mean()
    at_best = losses.heatmap_ce_loss(heatmaps=best, targets=targets, visible=vis)
    assert at_best == pytest.approx(entropy, rel=1e-4)
    assert float(jnp.max(jnp.abs(grad(best)))) < 1e-5
    assert float(jnp.max(jnp.abs(grad(jnp.asarray(logits))))) > 1e-3


def test_joints2d_and_refiner_loss_hand_computed():
    true = jnp.zeros((1, J, 2))
    pred = np.zeros((1, J, 2), np.float32)
    pred[0, 0] = (3.0, 4.0)  # 5 px, i.e. 0.5 crop sides of 10 px -> 0.25
    pred[0, 2] = (100.0, 100.0)  # invisible
    pred = jnp.asarray(pred)
    vis = _visible_except(1, 2)
    loss = losses.joints2d_loss(joints2d_pred=pred, joints2d_true=true, visible=vis, crop_size=10.0)
    assert loss == pytest.approx(0.25 / 20)
    iters = jnp.stack([pred, true])
    r = losses.refiner_loss(joints2d_iters=iters, joints2d_true=true, visible=vis, crop_size=10.0)
    assert r == pytest.approx(0.25 / 20)
    r2 = losses.refiner_loss(
        joints2d_iters=jnp.stack([pred, pred]), joints2d_true=true, visible=vis, crop_size=10.0
    )
    assert r2 == pytest.approx(2 * 0.25 / 20)


def test_zero_visibility_gives_zero_loss_and_finite_gradients():
    vis = jnp.zeros((2, J))
    pred = jax.random.normal(jax.random.PRNGKey(0), (2, J, 2)) * 50
    true = jnp.zeros((2, J, 2))

    def f(p):
        return losses.joints2d_loss(
            joints2d_pred=p, joints2d_true=true, visible=vis, crop_size=224.0
        ) + losses.heatmap_loss(
            heatmaps=jnp.zeros((2, 4, 4, J)) + p[:, :1, :1, None].sum(),
            targets=jnp.zeros((2, 4, 4, J)),
            visible=vis,
        )

    val, grad = jax.value_and_grad(f)(pred)
    assert val == 0.0
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)
    gate = losses.shape_weight(joints2d_pred=true, joints2d_true=true, visible=vis, tau=10.0)
    np.testing.assert_array_equal(gate, [0.0, 0.0])
    np.testing.assert_array_equal(losses.box_size(joints2d=pred, visible=vis), [0.0, 0.0])


def test_box_size_uses_visible_joints_only():
    j = np.full((1, J, 2), 30.0, np.float32)
    j[0, 0] = (10.0, 20.0)
    j[0, 1] = (50.0, 40.0)
    j[0, 2] = (500.0, 500.0)  # invisible outlier
    c = losses.box_size(joints2d=jnp.asarray(j), visible=_visible_except(1, 2))
    np.testing.assert_allclose(c, [1.5 * 40.0])  # config.data.crop_scale's default
    c = losses.box_size(joints2d=jnp.asarray(j), visible=_visible_except(1, 2), crop_scale=2.0)
    np.testing.assert_allclose(c, [2.0 * 40.0])


def _hand_joints(batch=3, seed=0):
    model = mano.open_hand()
    p = params.MeshParams.initial(batch, model)
    p = p._replace(
        pose=p.pose + 0.3 * jax.random.normal(jax.random.PRNGKey(seed), p.pose.shape),
        trans=jnp.array([[0.05, -0.02, 0.1], [-0.1, 0.03, 0.0], [0.0, 0.0, 0.3]])[:batch],
    )
    return params.mesh(p, model).joints


def test_normalize_hand_computed():
    root = jnp.array([0.1, -0.05, 0.5])
    joints = jnp.tile(root, (1, J, 1)).at[0, 0].add(jnp.array([0.01, 0.02, 0.03]))
    n = losses.normalize_joints(joints, box_size=jnp.array([100.0]), focal=jnp.array([500.0]))
    # f / (z_r c) = 500 / (0.5 * 100) = 10
    np.testing.assert_allclose(n[0, 0], [0.1, 0.2, 0.3], rtol=1e-5)
    np.testing.assert_allclose(n[0, 1:], 0.0, atol=1e-7)


def test_normalize_denormalize_round_trip():
    joints = _hand_joints()
    c = jnp.array([120.0, 200.0, 90.0])
    f = jnp.array([500.0, 800.0, 300.0])
    n = losses.normalize_joints(joints, box_size=c, focal=f)
    back = losses.denormalize_joints(n, root=joints[:, skeleton.MIDDLE_MCP], box_size=c, focal=f)
    np.testing.assert_allclose(back, joints, atol=1e-6)
    np.testing.assert_allclose(n[:, skeleton.MIDDLE_MCP], 0.0, atol=1e-7)


def test_normalize_invariances():
    joints = _hand_joints()
    c = jnp.array([120.0, 200.0, 90.0])
    f = jnp.array([500.0, 800.0, 300.0])
    n = losses.normalize_joints(joints, box_size=c, focal=f)
    shifted = joints + jnp.array([0.2, -0.1, 0.0])  # in x, y at fixed depth
    np.testing.assert_allclose(
        losses.normalize_joints(shifted, box_size=c, focal=f), n, rtol=1e-5, atol=1e-6
    )
    resized = losses.normalize_joints(joints, box_size=c * 2.5, focal=f * 2.5)  # crop resized
    np.testing.assert_allclose(resized, n, rtol=1e-5, atol=1e-6)
    scaled = losses.normalize_joints(joints * 1.7, box_size=c, focal=f)  # about the camera
    np.testing.assert_allclose(scaled, n, rtol=1e-5, atol=1e-6)
    # but it does see a change of depth alone (the hand looks smaller)
    deeper = losses.normalize_joints(joints + jnp.array([0.0, 0.0, 0.3]), box_size=c, focal=f)
    assert np.abs(deeper - n).max() > 1e-2


def test_normalize_root_at_camera_is_finite():
    joints = _hand_joints()
    joints = joints - joints[:, skeleton.MIDDLE_MCP : skeleton.MIDDLE_MCP + 1]  # z_r = 0
    c, f = jnp.full((3,), 100.0), jnp.full((3,), 500.0)
    n = losses.normalize_joints(joints, box_size=c, focal=f)
    assert np.all(np.isfinite(n))
    np.testing.assert_allclose(n, joints * 500.0 / (losses.MIN_DEPTH * 100.0), rtol=1e-5)
    g = jax.grad(
        lambda j: losses.articulation_loss(
            joints3d_pred=j, joints3d_true=joints + 0.01, box_size=c, focal=f
        )
    )(joints)
    assert np.all(np.isfinite(g))


def test_articulation_loss_hand_computed_and_translation_blind():
    true = _hand_joints()
    c, f = jnp.full((3,), 100.0), jnp.full((3,), 500.0)
    kw = dict(box_size=c, focal=f)
    moved = true + jnp.array([0.03, -0.02, 0.0])
    assert losses.articulation_loss(joints3d_pred=moved, joints3d_true=true, **kw) < 1e-9
    z_r = true[:, skeleton.MIDDLE_MCP, 2]
    pred = true.at[:, 0, 0].add(0.01)  # wrist 1 cm to the right
    expected = jnp.mean((0.01 * 500.0 / (z_r * 100.0)) ** 2) / J
    loss = losses.articulation_loss(joints3d_pred=pred, joints3d_true=true, **kw)
    assert loss == pytest.approx(float(expected), rel=1e-4)
    masked = losses.articulation_loss(
        joints3d_pred=pred, joints3d_true=true, visible=_visible_except(3, 0), **kw
    )
    assert masked < 1e-9


def test_shape_loss_per_example_weights():
    sil = jnp.ones((2, 2, 3))
    mask = jnp.zeros((2, 2, 3)).at[1].set(0.5)
    # per-example errors 1.0 and 0.25
    assert losses.shape_loss(silhouettes=sil, masks=mask) == pytest.approx((1.0 + 0.25) / 2)
    gated = losses.shape_loss(silhouettes=sil, masks=mask, weights=jnp.array([0.0, 1.0]))
    assert gated == pytest.approx(0.25 / 2)


def test_shape_weight_gate_at_tau_without_gradient():
    true = jnp.zeros((1, J, 2))
    pred = jnp.tile(jnp.array([3.0, 4.0]), (1, J, 1))  # every joint 5 px off
    pred = pred.at[0, 7].set(1000.0)  # invisible outlier

    def gate(p, tau):
        return losses.shape_weight(
            joints2d_pred=p, joints2d_true=true, visible=_visible_except(1, 7), tau=tau
        )

    assert gate(pred, 5.01)[0] == 1.0
    assert gate(pred, 5.0)[0] == 0.0
    assert gate(pred, 4.0)[0] == 0.0
    assert gate(pred.at[0, 7].set(0.0), 5.01)[0] == 1.0  # the outlier never counted
    g = jax.grad(lambda p: gate(p, 5.01).sum() * jnp.sum(p))(pred)
    np.testing.assert_array_equal(g, 1.0)  # only the explicit sum, nothing through the gate


def _grid(n=3):
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], -1).astype(np.float32)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [(a, b, e), (a, e, d)]
    return jnp.asarray(verts), np.asarray(faces)


def test_uniform_neighbours_of_one_triangle():
    index, weight = losses.uniform_neighbours(np.array([[0, 1, 2]]), 4)
    assert sorted(index[0][weight[0] > 0]) == [1, 2]
    np.testing.assert_allclose(weight[:3].sum(-1), 1.0)
    np.testing.assert_array_equal(weight[3], 0.0)  # vertex 3 is in no face
    v = jnp.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [5.0, 5.0, 5.0]])
    lap = losses.uniform_laplacian(v, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(lap[0], [-1.0, -2.0, 0.0])
    np.testing.assert_allclose(lap[3], 0.0)


def test_laplacian_plain_is_zero_on_flat_grid_interior():
    verts, faces = _grid(4)
    lap = losses.uniform_laplacian(verts[None], faces)[0]
    interior = [5, 6, 9, 10]
    np.testing.assert_allclose(lap[np.asarray(interior)], 0.0, atol=1e-6)
    assert np.abs(lap).max() > 0.1  # boundary vertices are not centred
    bumped = verts.at[5, 2].set(0.7)
    lap_b = losses.uniform_laplacian(bumped[None], faces)[0]
    np.testing.assert_allclose(lap_b[5], [0.0, 0.0, 0.7], atol=1e-6)
    before = losses.laplacian_loss(vertices=verts[None], faces=faces, mode="plain")
    after = losses.laplacian_loss(vertices=bumped[None], faces=faces, mode="plain")
    assert after > before


def test_laplacian_delta_zero_for_template_positive_otherwise():
    model = mano.open_hand()
    faces, template = np.asarray(model.faces), jnp.asarray(model.v_template)
    same = losses.laplacian_loss(vertices=template[None], template=template, faces=faces)
    assert same == 0.0
    plain = losses.laplacian_loss(vertices=template[None], faces=faces, mode="plain")
    assert plain > 0.0  # a hand at rest is not flat
    noisy = template + 1e-3 * jax.random.normal(jax.random.PRNGKey(1), template.shape)
    assert losses.laplacian_loss(vertices=noisy[None], template=template, faces=faces) > 1e-7
    # jit with faces closed over; translation does not change it
    f = jax.jit(lambda v: losses.laplacian_loss(vertices=v, template=template, faces=faces))
    np.testing.assert_allclose(f(noisy[None] + 0.3), f(noisy[None]), rtol=1e-4)


def test_laplacian_errors():
    verts, faces = _grid(3)
    with pytest.raises(TypeError, match="concrete faces"):
        jax.jit(lambda f: losses.laplacian_loss(vertices=verts[None], faces=f, mode="plain"))(
            jnp.asarray(faces)
        )
    with pytest.raises(ValueError, match="template"):
        losses.laplacian_loss(vertices=verts[None], faces=faces)
    with pytest.raises(ValueError, match="mode"):
        losses.laplacian_loss(vertices=verts[None], faces=faces, mode="cotangent")


def test_total_loss_weights_and_logs():
    terms = {"articulation": jnp.asarray(2.0), "shape": jnp.asarray(3.0)}
    total, logs = losses.total_loss(terms=terms, weights={"shape": 0.5})
    assert total == pytest.approx(2.0 + 1.5)
    assert set(logs) == {"articulation", "shape", "total"}
    assert logs["shape"] == 3.0 and logs["total"] == pytest.approx(3.5)
    default, _ = losses.total_loss(terms={**terms, "projection": jnp.asarray(7.0)})
    assert default == pytest.approx(2.0 + 3.0)  # projection's default weight is 0
    with pytest.raises(KeyError, match="unknown loss terms"):
        losses.total_loss(terms={"artic": jnp.asarray(1.0)})
    with pytest.raises(KeyError, match="unknown loss weight"):
        losses.total_loss(terms=terms, weights={"shapes": 1.0})


def test_aligned_articulation_ignores_the_global_rotation_but_not_the_pose():
    rng = np.random.default_rng(3)
    true = (rng.normal(0.0, 0.03, (2, J, 3)) + np.array([0.0, 0.0, 0.5])).astype(np.float32)
    root = true[:, 9:10]
    turn = geometry.axis_angle_to_matrix(jnp.asarray([[0.3, -1.2, 2.0], [1.0, 0.5, -0.4]]))
    turned = (np.einsum("bxy,bjy->bjx", np.asarray(turn), true - root) + root).astype(np.float32)
    kw = dict(box_size=jnp.full((2,), 100.0), focal=jnp.full((2,), 200.0))
    aligned = losses.aligned_articulation_loss(joints3d_pred=turned, joints3d_true=true, **kw)
    plain = losses.articulation_loss(joints3d_pred=turned, joints3d_true=true, **kw)
    assert float(aligned) < 1e-8 < 1e-3 < float(plain)
    bent = turned.copy()
    bent[:, 12] += 0.02  # a fingertip moved: not a rotation
    assert (
        float(losses.aligned_articulation_loss(joints3d_pred=bent, joints3d_true=true, **kw)) > 1e-4
    )
    grad = jax.grad(
        lambda x: losses.aligned_articulation_loss(joints3d_pred=x, joints3d_true=true, **kw)
    )(jnp.asarray(bent))
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad[:, 12]).max()) > 0
