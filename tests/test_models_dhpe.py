"""The whole DHPE: Eqs. 5 and 6 wired as written, placement in the crop, gradients reach f_E."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handfit import mano, params, render
from handfit.models import cpm, dhpe, heads, resnet, segmentation

S = 64
HAND = mano.open_hand()


def intrinsics(batch):
    """Crop intrinsics whose principal point is off the crop centre, as real crops have."""
    K = np.array([[90.0, 0.0, 20.0], [0.0, 95.0, 45.0], [0.0, 0.0, 1.0]], np.float32)
    K = np.repeat(K[None], batch, 0)
    K[-1, 0, 0] = K[-1, 1, 1] = 150.0
    return jnp.asarray(K)


def make(use_refiner=True):
    return dhpe.DHPE(
        backbone=resnet.ResNetTiny,
        cpm=cpm.CPMTiny,
        crop_size=S,
        render_size=32,
        use_refiner=use_refiner,
    )


@pytest.fixture(scope="module")
def run():
    model = make()
    variables = dhpe.init(model, jax.random.key(0), HAND, batch=2)
    images = jax.random.uniform(jax.random.key(1), (2, S, S, 3))
    K = intrinsics(2)
    out = jax.jit(lambda v, x, k: model.apply(v, x, k, HAND, train=False))(variables, images, K)
    return model, variables, images, K, out


@pytest.fixture(scope="module")
def rendered(run):
    model, _, _, K, out = run
    return jax.jit(lambda v, k: model.silhouettes(v, k, HAND))(out.vertices, K)


def test_shapes(run, rendered):
    _, _, _, _, out = run
    t, b, v = 3, 2, HAND.num_vertices
    assert out.params.shape == (t, b, 63)
    assert out.vertices.shape == (t, b, v, 3)
    assert out.joints3d.shape == out.joints2d_proj.shape[:3] + (3,) == (t, b, 21, 3)
    assert out.joints2d.shape == (t, b, 21, 2) and out.joints2d_cpm.shape == (b, 21, 2)
    assert out.heatmaps.shape == (2, b, 32, 32, 21)
    assert rendered.silhouette.shape == (t, b, 32, 32)
    assert rendered.overflow.shape == (t, b) and int(rendered.overflow.sum()) == 0


def test_silhouettes_render_each_iterations_mesh_with_its_crops_camera(run, rendered):
    _, _, _, K, out = run
    camera = render.resize(render.crop_camera(K, S), 32)
    for t in (0, 2):
        want = render.soft_silhouette(out.vertices[t], HAND.faces, camera, sigma=1.0)
        np.testing.assert_allclose(rendered.silhouette[t], want.silhouette, atol=1e-5)


def test_the_forward_pass_renders_nothing(run, monkeypatch):
    """Callers that do not need silhouettes (evaluation, augmentation seeds) do not pay."""
    model, variables, images, K, _ = run

    def refuse(*args, **kwargs):
        raise AssertionError("the forward pass rendered silhouettes")

    monkeypatch.setattr(render, "soft_silhouette", refuse)
    jax.make_jaxpr(lambda v, x, k: model.apply(v, x, k, HAND, train=False))(variables, images, K)
    with pytest.raises(ValueError, match="render_size is 0"):
        model.clone(render_size=0).silhouettes(jnp.zeros((1, 1, 3, 3)), K[:1], HAND)


def test_iterations_follow_eqs_5_and_6(run):
    """p(1) = p(0) + f_M([f, j2D(0), p(0)]) and j2D(1) = f_R([p(0), f, J(m(p(0))), j2D(0)])."""
    _, variables, _, K, out = run
    p0 = params.MeshParams.initial(2, HAND).to_vector()
    mesh0 = dhpe.place(p0, HAND, K, float(S))
    w = variables["params"]
    p1 = heads.MeshRegressor(crop_size=float(S)).apply(
        {"params": w["mesh_regressor"]}, out.features, out.joints2d_cpm, p0
    )
    j1 = heads.PoseRefiner(crop_size=float(S)).apply(
        {"params": w["pose_refiner"]}, p0, out.features, mesh0.joints, out.joints2d_cpm
    )
    np.testing.assert_allclose(out.params[0], p1, atol=1e-5)
    np.testing.assert_allclose(out.joints2d[0], j1, atol=1e-3)
    # the mesh of each iteration is that of its parameters, and projected with the crop's K
    m2 = dhpe.place(out.params[2], HAND, K, float(S))
    np.testing.assert_allclose(out.joints3d[2], m2.joints, atol=1e-5)
    np.testing.assert_allclose(out.model_vertices[2], m2.model_frame.vertices, atol=1e-6)
    uv = render.project(out.joints3d[2], render.crop_camera(K, S))
    np.testing.assert_allclose(out.joints2d_proj[2], uv, atol=1e-3)


def test_neutral_parameters_frame_the_hand_in_the_crop():
    """p(0) puts the middle MCP on the crop centre and the hand at about 1/1.5 of the crop."""
    K = intrinsics(2)
    p0 = params.MeshParams.initial(2, HAND).to_vector()
    joints = dhpe.place(p0, HAND, K, float(S)).joints
    uv = np.asarray(render.project(joints, render.crop_camera(K, S)))
    np.testing.assert_allclose(uv[:, 9], S / 2, atol=1e-3)  # canonical 9: middle MCP
    extent = (uv.max(1) - uv.min(1)).max(-1)
    assert np.all((extent > 0.5 * S) & (extent < 0.9 * S)), extent


def test_silhouette_covers_the_projected_hand(run, rendered):
    _, _, _, _, out = run
    sil = np.asarray(rendered.silhouette[-1])
    uv = np.asarray(out.joints2d_proj[-1]) * (32 / S)  # render-size pixels
    for b in range(2):
        c, r = uv[b, 9].astype(int)  # the middle MCP lies on the palm
        assert sil[b, r, c] > 0.5
        assert sil[b].mean() < 0.8


def test_without_refiner_the_cpm_joints_are_used_throughout(run):
    model = make(use_refiner=False)
    kept = {k: v for k, v in run[1]["params"].items() if k != "pose_refiner"}
    variables = {"params": kept, "batch_stats": run[1]["batch_stats"]}
    images = jax.random.uniform(jax.random.key(2), (1, S, S, 3))
    out = jax.jit(lambda v, x, k: model.apply(v, x, k, HAND, train=False))(
        variables, images, intrinsics(1)
    )
    for t in range(3):
        np.testing.assert_array_equal(out.joints2d[t], out.joints2d_cpm)


def test_teacher_joints_replace_the_cpm_joints_where_masked(run):
    """Teacher forcing: f_M starts from the given joints where the mask says so and from
    j2D(0) elsewhere; the CPM's own joints are reported unchanged."""
    model = make(use_refiner=False)
    kept = {k: v for k, v in run[1]["params"].items() if k != "pose_refiner"}
    variables = {"params": kept, "batch_stats": run[1]["batch_stats"]}
    _, _, images, K, _ = run
    teacher = jnp.full((2, 21, 2), 20.0)
    mask = jnp.zeros((2, 21), bool).at[0, :5].set(True)
    apply = jax.jit(lambda v, x, k, **kw: model.apply(v, x, k, HAND, train=False, **kw))
    plain = apply(variables, images, K)
    taught = apply(variables, images, K, teacher_joints2d=teacher, teacher_mask=mask)
    np.testing.assert_array_equal(taught.joints2d_cpm, plain.joints2d_cpm)
    np.testing.assert_array_equal(taught.joints2d[-1, 0, :5], teacher[0, :5])
    np.testing.assert_array_equal(taught.joints2d[-1, 0, 5:], plain.joints2d_cpm[0, 5:])
    np.testing.assert_array_equal(taught.joints2d[-1, 1], plain.joints2d_cpm[1])
    assert not np.allclose(taught.params[0, 0], plain.params[0, 0])  # f_M read them
    np.testing.assert_allclose(taught.params[:, 1], plain.params[:, 1], atol=1e-6)


def test_gradients_reach_every_network_but_f_h_only_from_its_own_joints(run):
    """The heads' outputs train f_F, f_M and f_R; f_H learns from its own j2D(0) (Eqs. 3 and
    the keypoints term), never through the heads, as with the paper's arg-max."""
    model, variables, images, K, _ = run

    def grads_of(output):
        def loss(p):
            out, _ = model.apply(
                {"params": p, "batch_stats": variables["batch_stats"]},
                images,
                K,
                HAND,
                train=True,
                mutable=["batch_stats"],
            )
            return output(out)

        grads = jax.jit(jax.grad(loss))(variables["params"])
        return {k: sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(v)) for k, v in grads.items()}

    heads = grads_of(
        lambda out: jnp.mean(out.joints3d[-1] ** 2) + jnp.mean(out.joints2d[-1] ** 2) * 1e-4
    )
    for name in ("backbone", "mesh_regressor", "pose_refiner"):
        assert np.isfinite(heads[name]) and heads[name] > 0, name
    assert heads["cpm"] == 0.0
    own = grads_of(lambda out: jnp.mean(out.joints2d_cpm**2))
    assert own["cpm"] > 0 and own["backbone"] > 0
    assert own["mesh_regressor"] == 0.0


def test_bad_inputs_are_named(run):
    model, variables = run[:2]
    with pytest.raises(ValueError, match="images must be"):
        model.apply(variables, jnp.zeros((1, 32, 32, 3)), intrinsics(1)[:1], HAND, train=False)
    with pytest.raises(ValueError, match="K must be"):
        model.apply(variables, jnp.zeros((1, S, S, 3)), jnp.eye(3), HAND, train=False)


@pytest.mark.parametrize("form, beta", [("gaussian", cpm.DEFAULT_BETA), ("logits", 1.0)])
def test_cpm_joints_are_read_as_the_heatmap_form_says(run, form, beta):
    """Gaussian maps are sharpened by DEFAULT_BETA; logits are read as their own softmax."""
    _, variables, images, K, _ = run
    model = make().clone(heatmap_form=form)
    out = model.apply(variables, images, K, HAND, train=False)
    expected = cpm.soft_argmax(out.heatmaps[-1], crop_size=float(S), beta=beta)
    other = cpm.soft_argmax(out.heatmaps[-1], crop_size=float(S), beta=26.0 - beta)
    np.testing.assert_allclose(out.joints2d_cpm, expected, rtol=1e-5, atol=1e-4)
    assert float(jnp.max(jnp.abs(out.joints2d_cpm - other))) > 1e-3
    spread = cpm.soft_argmax_with_spread(out.heatmaps[-1], crop_size=float(S), beta=beta)[1]
    np.testing.assert_allclose(out.joints2d_spread, spread, rtol=1e-5, atol=1e-4)
    assert out.joints2d_spread.shape == out.joints2d_cpm.shape[:-1]


def test_mask_head_gives_logits_at_crop_size_from_f_hs_input_map(run):
    """model.mask_head: f_S's logits [B, S, S], a function of the image (through the map f_H
    reads), trained by its own parameters; without it the output has none."""
    _, _, images, K, out = run
    assert out.mask_logits is None
    model = dhpe.DHPE(
        backbone=resnet.ResNetTiny, cpm=cpm.CPMTiny, crop_size=S, render_size=0, mask_head=True
    )
    variables = dhpe.init(model, jax.random.key(0), HAND, batch=2)
    assert set(variables["params"]["mask_head"]) == {"conv", "logits"}
    got = model.apply(variables, images, K, HAND, train=False)
    assert got.mask_logits.shape == (2, S, S)
    other = model.apply(variables, images[::-1], K, HAND, train=False)
    np.testing.assert_allclose(other.mask_logits, got.mask_logits[::-1], atol=1e-5)
    assert float(jnp.abs(got.mask_logits[0] - got.mask_logits[1]).max()) > 0
    probs = segmentation.mask_probabilities(got.mask_logits, S)
    np.testing.assert_allclose(probs, jax.nn.sigmoid(got.mask_logits), atol=1e-6)
