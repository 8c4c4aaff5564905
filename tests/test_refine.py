"""Tests of handfit.refine: refinement (Eq. 13), DHPE hooks, bad input, fitting, tracing."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from handfit import geometry, losses, mano, params, refine, render
from handfit.params import MeshParams

SIZE = 64
BUDGET = 8192
CFG = refine.RefineConfig(steps=30, render_size=32, budget=BUDGET)


@pytest.fixture(scope="module")
def model():
    return mano.open_hand()


@pytest.fixture(scope="module")
def camera():
    f = 1.6 * SIZE
    return render.perspective_camera(f, f, SIZE / 2, SIZE / 2, SIZE, SIZE)


@functools.partial(jax.jit, static_argnames=("n",))
def _problem(model, camera, n, seed=0):
    """Known hands (truth), perturbed starts and exact evidence (joints and hard masks)."""
    k = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), seed), 6)
    angles = jax.random.uniform(k[2], (n, 3), minval=-0.8, maxval=0.8)
    truth = MeshParams(
        pose=mano.sample_poses(k[0], model, n),
        shape=jax.random.normal(k[1], (n, 10)),
        quat=geometry.axis_angle_to_quaternion(angles) - jnp.array([1.0, 0, 0, 0]),
        scale=jnp.zeros((n, 1)),
        trans=jnp.zeros((n, 3)),
    )
    start = truth._replace(
        pose=truth.pose + 0.3 * jax.random.normal(k[3], (n, 45)),
        shape=truth.shape + jax.random.normal(k[4], (n, 10)),
        quat=truth.quat + 0.1 * jax.random.normal(k[5], (n, 4)),
    )
    out = params.mesh(truth, model)
    evidence = refine.Evidence(
        joints2d=render.project(out.joints, camera),
        visible=jnp.ones((n, 21)),
        mask=render.rasterize(out.vertices, model.faces, camera).mask,
    )
    return truth, start, evidence


def _error2d(result_or_joints, evidence, camera):
    joints = getattr(result_or_joints, "joints3d", result_or_joints)
    d = jnp.linalg.norm(render.project(joints, camera) - evidence.joints2d, axis=-1)
    return np.asarray(jnp.mean(d, -1))


@pytest.fixture(scope="module")
def main_run(model, camera):
    truth, start, evidence = _problem(model, camera, 2)
    return truth, start, evidence, refine.refine(start, evidence, model, camera, CFG)


def test_refine_moves_towards_the_evidence(main_run, model, camera):
    _, start, evidence, res = main_run
    before = _error2d(params.mesh(start, model).joints, evidence, camera)
    after = _error2d(res, evidence, camera)
    assert np.all(after < 0.7 * before), (before, after)
    assert res.losses.shape == (CFG.steps, 2)
    assert np.all(np.asarray(res.losses[-1]) < np.asarray(res.losses[0]))
    assert set(res.terms) == {"joints2d", "silhouette", "shape_prior", "pose_prior"}
    assert np.all(np.asarray(res.overflow) == 0)
    # the returned mesh and joints are those of the returned parameters
    out = params.mesh(res.params, model)
    np.testing.assert_allclose(res.vertices, out.vertices, atol=1e-5)
    np.testing.assert_allclose(res.joints2d, render.project(out.joints, camera), atol=1e-3)
    np.testing.assert_allclose(res.target2d, evidence.joints2d)


def test_zero_steps_returns_the_start(main_run, model, camera):
    _, start, evidence, _ = main_run
    res = refine.refine(start, evidence, model, camera, dataclasses.replace(CFG, steps=0))
    assert res.losses.shape == (0, 2)
    chex.assert_trees_all_equal(res.params, start)
    np.testing.assert_allclose(res.vertices, params.mesh(start, model).vertices, atol=1e-6)


def test_the_base_point_only_moves_the_origin_of_trans(main_run, model, camera):
    """Refining from other base points, trans shifted to match, gives the same hands (so the
    network's estimates are refined from their crops' base point as they are)."""
    _, start, evidence, res = main_run
    base = jnp.array([[0.02, -0.01, 0.45], [0.0, 0.03, 0.6]])
    shift = jnp.asarray(params.BASE_TRANSLATION) - base
    moved = refine.refine(
        start._replace(trans=start.trans + shift),
        evidence,
        model,
        camera,
        CFG,
        base_translation=base,
    )
    np.testing.assert_allclose(moved.vertices, res.vertices, atol=1e-5)
    np.testing.assert_allclose(moved.params.trans, res.params.trans + shift, atol=1e-5)
    with pytest.raises(ValueError, match=r"base_translation must be \[3\] or \[B, 3\]"):
        refine.refine(start, evidence, model, camera, CFG, base_translation=base[:1])


def test_new_hooks_of_the_same_function_reuse_the_compiled_loop(main_run, model, camera):
    # As refine.dhpe_hooks builds per batch: the same function bound to other arrays.
    _, start, evidence, _ = main_run
    cfg = refine.RefineConfig(steps=2, silhouette_weight=0.0)

    def f_r(anchor, vec, joints3d, joints2d):
        return 0.5 * (joints2d + anchor)

    targets = []
    for shift in (3.0, -2.0):
        hook = jax.tree_util.Partial(f_r, evidence.joints2d + shift)
        hooks = refine.DHPEHooks(refine_joints2d=hook, features=None, images=None)
        res = refine.refine(start, evidence, model, camera, cfg, hooks)
        if shift == 3.0:
            compiled = refine._refine._cache_size()
        targets.append(res.target2d)
    assert refine._refine._cache_size() == compiled  # no second compile
    np.testing.assert_allclose(targets[0] - targets[1], 5.0 * (1 - 0.5**cfg.steps), atol=1e-3)


def test_bad_inputs_give_finite_results_and_examples_are_independent(main_run, model, camera):
    """Example 0 is the main run's; example 1 has a degenerate start (zero quaternion, tiny
    scale, behind the camera), an empty mask, half its joints invisible and the others far
    outside the image."""
    _, start, evidence, res = main_run
    start2 = start._replace(
        quat=start.quat.at[1].set(jnp.array([-1.0, 0, 0, 0])),
        scale=start.scale.at[1].set(-30.0),
        trans=start.trans.at[1].set(jnp.array([0.0, 0.0, -1.0])),
    )
    ev2 = evidence._replace(
        joints2d=evidence.joints2d.at[1].set(evidence.joints2d[1] * 50.0 - 1e4),
        visible=evidence.visible.at[1, :10].set(0.0),
        mask=evidence.mask.at[1].set(0.0),
    )
    res2 = refine.refine(start2, ev2, model, camera, CFG)
    for leaf in jax.tree.leaves(res2):
        assert np.all(np.isfinite(np.asarray(leaf)))
    np.testing.assert_allclose(res2.params.pose[0], res.params.pose[0], atol=1e-4)
    np.testing.assert_allclose(res2.losses[:, 0], res.losses[:, 0], rtol=1e-4, atol=1e-7)


def test_nan_evidence_is_rejected_naming_field_and_example(main_run, model, camera):
    _, start, evidence, _ = main_run
    bad = evidence._replace(joints2d=evidence.joints2d.at[1, 3, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"evidence\.joints2d .*example 1"):
        refine.refine(start, bad, model, camera, CFG)
    # NaN at a joint marked invisible is what the message advises: accepted, ignored
    hidden = bad._replace(visible=bad.visible.at[1, 3].set(0.0))
    zeroed = hidden._replace(joints2d=hidden.joints2d.at[1, 3, 0].set(0.0))
    a, b = (refine.refine(start, ev, model, camera, CFG) for ev in (hidden, zeroed))
    np.testing.assert_allclose(a.joints3d, b.joints3d)
    bad = evidence._replace(mask=evidence.mask.at[0, 5, 5].set(jnp.nan))
    with pytest.raises(ValueError, match=r"evidence\.mask .*example 0"):
        refine.refine(start, bad, model, camera, CFG)
    with pytest.raises(ValueError, match=r"evidence\.mask must be \[B, H, W\]"):
        refine.refine(start, evidence._replace(mask=evidence.mask[:, :10]), model, camera, CFG)
    with pytest.raises(ValueError, match="needs evidence.mask"):
        refine.refine(
            start,
            evidence._replace(mask=None),
            model,
            camera,
            refine.RefineConfig(silhouette_target="mask"),
        )


def test_config_from_config_section():
    section = ml_collections.ConfigDict(
        dict(enabled=True, input="", steps=7, freeze=["trans"], group_lr=[1, 2, 3, 4, 5])
    )
    cfg = refine.RefineConfig.from_config(section)
    assert cfg.steps == 7 and cfg.freeze == ("trans",) and cfg.group_lr == (1, 2, 3, 4, 5)
    hash(cfg)
    with pytest.raises(ValueError, match="unknown fields.*stpes"):
        refine.RefineConfig.from_config({"stpes": 3})
    with pytest.raises(ValueError, match="freeze"):
        refine.RefineConfig(freeze=("camera",))
    from configs import default

    assert refine.RefineConfig.from_config(default.get_config().refine).steps == 50


def test_spread_weights_trust_sharp_joints_and_ignore_flat_ones(model, camera):
    np.testing.assert_allclose(
        refine.spread_weights(jnp.array([[0.0, 2.0, 6.0]]), 2.0), [[1.0, 0.5, 0.1]], rtol=1e-6
    )
    with pytest.raises(ValueError, match="half_weight_spread must be > 0"):
        refine.spread_weights(jnp.zeros((1, 21)), 0.0)
    # Five joints' evidence is 12 px off and its maps were flat: weighted by their spread, the
    # fit follows the other 16 and leaves those five near the truth.
    truth, start, evidence = _problem(model, camera, 2, seed=3)
    bad = jnp.zeros(21, bool).at[jnp.array([4, 8, 12, 16, 20])].set(True)
    wrong = evidence._replace(
        joints2d=jnp.where(bad[:, None], evidence.joints2d + 12.0, evidence.joints2d), mask=None
    )
    spread = jnp.where(bad, 20.0, 1.0) * jnp.ones((2, 21))
    cfg = dataclasses.replace(CFG, silhouette_weight=0.0)
    uniform = refine.refine(start, wrong, model, camera, cfg)
    weighted = refine.refine(
        start, wrong._replace(visible=refine.spread_weights(spread, 2.0)), model, camera, cfg
    )
    true2d = render.project(params.mesh(truth, model).joints, camera)

    def off(res):
        return float(jnp.mean(jnp.linalg.norm(res.joints2d - true2d, axis=-1)[:, bad]))

    assert off(weighted) < 0.6 * off(uniform), (off(weighted), off(uniform))


def test_pose_anchor_keeps_the_articulation_near_the_start(main_run, model, camera):
    _, start, evidence, plain = main_run
    res = refine.refine(
        start, evidence, model, camera, dataclasses.replace(CFG, pose_anchor_weight=1.0)
    )
    assert "pose_anchor" in res.terms and "pose_anchor" not in plain.terms
    assert np.all(np.asarray(res.terms["pose_anchor"][0]) < 1e-12)  # 0 at the start
    moved = [float(jnp.sum(jnp.square(r.params.pose - start.pose))) for r in (res, plain)]
    assert moved[0] < 0.5 * moved[1], moved
    with pytest.raises(ValueError, match="pose_anchor_weight"):
        refine.RefineConfig(pose_anchor_weight=-1.0)


def test_joint_limit_penalty(model):
    pose = mano.sample_poses(jax.random.PRNGKey(1), model, 4)
    assert np.all(np.asarray(losses.joint_limit_violation(pose=pose, model=model)) < 1e-10)
    bent = pose.at[:, 3 * 4 + 1].add(1.0)  # index MCP twisted sideways by 1 rad
    assert np.all(np.asarray(losses.joint_limit_violation(pose=bent, model=model)) > 0.1)


def test_frozen_groups_hooks_and_one_trace(main_run, model, camera):
    """DHPE hooks: f_R re-estimates the 2D target every step, f_F gives the silhouette term;
    frozen groups stay put; under a user's jit the whole refinement traces once."""
    _, start, evidence, _ = main_run
    anchor = evidence.joints2d + 3.0

    def f_r(vec, joints3d, joints2d):  # halves the distance to a fixed point each call
        assert vec.shape == (2, 63) and joints3d.shape == (2, 21, 3)
        return 0.5 * (joints2d + anchor)

    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
    weights = jax.random.normal(jax.random.PRNGKey(1), (16 * 16 * 3, 8))

    def features(x):  # a stand-in f_F: a fixed linear map of the image
        return x.reshape(x.shape[0], -1) @ weights

    hooks = refine.DHPEHooks(refine_joints2d=f_r, features=features, images=images)
    cfg = refine.RefineConfig(
        steps=4,
        render_size=32,
        budget=BUDGET,
        silhouette_target="features",
        freeze=("trans", "scale"),
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(p, ev):
        return refine.refine(p, ev, model, camera, cfg, hooks)

    res = run(start, evidence)
    expect = anchor + (evidence.joints2d - anchor) * 0.5**cfg.steps
    np.testing.assert_allclose(res.target2d, expect, atol=1e-3)
    np.testing.assert_array_equal(res.params.trans, start.trans)
    np.testing.assert_array_equal(res.params.scale, start.scale)
    assert not np.allclose(res.params.pose, start.pose)
    assert np.all(np.asarray(res.terms["silhouette"]) > 0)
    shifted = evidence._replace(joints2d=evidence.joints2d + 1.0)
    jax.block_until_ready(run(start._replace(shape=start.shape * 0.5), shifted))


FIT = refine.RefineConfig(steps=40, silhouette_weight=0.0, fit_starts=1)


def test_fit_takes_nan_at_invisible_joints_and_refuses_nan_visibility(model, camera):
    truth, _, evidence = _problem(model, camera, 1)
    vis = np.ones((1, 21), np.float32)
    vis[0, 3] = 0.0
    with_nan = np.asarray(evidence.joints2d).copy()
    with_nan[0, 3] = np.nan
    zeroed = np.where(vis[..., None] > 0, with_nan, 0.0)
    a = refine.fit(with_nan, vis, camera, model, config=FIT)
    b = refine.fit(zeroed, vis, camera, model, config=FIT)
    np.testing.assert_allclose(a.joints3d, b.joints3d, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(a.joints3d)))
    vis[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"visibility holds NaN .*example 0"):
        refine.fit(zeroed, vis, camera, model, config=FIT)
    with pytest.raises(ValueError, match=r"joints2d \(at visible joints\) holds NaN"):
        refine.fit(with_nan, np.ones((1, 21)), camera, model, config=FIT)


def test_fit_of_no_hands_is_an_empty_result(model, camera):
    res = refine.fit(np.zeros((0, 21, 2)), np.zeros((0, 21)), camera, model, config=FIT)
    assert res.joints3d.shape == (0, 21, 3) and res.joints2d.shape == (0, 21, 2)
    assert res.vertices.shape == (0, model.num_vertices, 3)
    assert res.params.pose.shape == (0, 45) and res.losses.shape == (FIT.steps, 0)
    assert set(res.terms) == {"joints2d", "shape_prior", "pose_prior"}


def test_world_terms_measure_relative_shape_and_bone_directions(model):
    joints = params.mesh(MeshParams.initial(1, model), model).joints
    vis = jnp.ones((1, 21))
    moved = joints + jnp.array([0.1, -0.2, 0.3])
    assert float(refine._world_joints(joints, moved, vis)[0]) < 1e-10
    assert float(refine._world_bones(joints, moved, vis)[0]) < 1e-10
    # a smaller hand: same bone directions, other relative positions
    centre = joints.mean(1, keepdims=True)
    small = 0.8 * (joints - centre) + centre
    assert float(refine._world_bones(joints, small, vis)[0]) < 1e-10
    assert float(refine._world_joints(joints, small, vis)[0]) > 1e-5
    turned = jnp.einsum(
        "ij,bkj->bki", geometry.axis_angle_to_matrix(jnp.array([0.0, 0.0, 0.3])), joints
    )
    assert float(refine._world_bones(joints, turned, vis)[0]) > 1e-3
    # invisible joints do not count
    wrong = joints.at[0, 20].add(0.05)
    hidden = vis.at[0, 20].set(0.0)
    assert float(refine._world_joints(joints, wrong, hidden)[0]) < 1e-10
    assert float(refine._world_bones(joints, wrong, hidden)[0]) < 1e-10


def test_world_evidence_fixes_the_depth_that_2d_joints_leave_open(model, camera):
    """A hand smaller than the mean (shape 0 at -2.5), 0.7 m away: from 2D joints alone the
    fit takes a mean-sized hand farther away; with metric world joints it finds the depth."""
    quat = geometry.axis_angle_to_quaternion(jnp.array([[0.4, -0.3, 0.2]]))
    truth = MeshParams.initial(1, model)._replace(
        shape=jnp.zeros((1, 10)).at[0, 0].set(-2.5),
        quat=quat - jnp.array([1.0, 0, 0, 0]),
        trans=jnp.array([[0.02, -0.01, 0.2]]),
    )
    joints = params.mesh(truth, model).joints
    joints2d, vis = render.project(joints, camera), jnp.ones((1, 21))
    world = joints - joints.mean(1, keepdims=True) + 0.3  # any offset: only shape counts
    plain = refine.fit(joints2d, vis, camera, model, config=FIT)
    with_world = refine.fit(joints2d, vis, camera, model, world=world, config=FIT)
    depth = float(joints[0, 9, 2])
    err_plain = abs(float(plain.joints3d[0, 9, 2]) - depth)
    err_world = abs(float(with_world.joints3d[0, 9, 2]) - depth)
    assert err_world < 0.3 * err_plain and err_world < 0.02, (err_plain, err_world)
    assert "world_joints" in with_world.terms and "world_joints" not in plain.terms
    err2d = jnp.linalg.norm(with_world.joints2d - joints2d, axis=-1)
    assert float(jnp.mean(err2d)) < 1.0
