"""Tests of handfit.augment: generated examples are consistent, textured from the seed, batched."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from handfit import augment, mano, params, render
from handfit.data import pipeline

B, S, HS = 2, 64, 16
FOCAL = 113.0  # a hand of ~19 cm at 0.5 m spans ~43 of the 64 pixels
BASE = (0.0, 0.0, 0.5)
# One compilation per batch size instead of one per operation.
mesh = jax.jit(functools.partial(params.mesh, base_translation=BASE))


@pytest.fixture(scope="module")
def hand():
    return mano.open_hand()


@pytest.fixture(scope="module")
def K():
    k = np.array([[FOCAL, 0, S / 2], [0, FOCAL, S / 2], [0, 0, 1]], np.float32)
    return jnp.asarray(np.tile(k, (B, 1, 1)))


@pytest.fixture(scope="module")
def seeds(hand):
    """Seed 0: the mean pose facing the camera; seed 1: another pose, turned and moved."""
    p = params.MeshParams.initial(B, hand)
    pose = mano.sample_poses(jax.random.key(3), hand, 1)[0]
    return p._replace(
        pose=p.pose.at[1].set(pose),
        shape=p.shape.at[1, :3].set(jnp.array([1.0, -0.5, 0.5])),
        quat=p.quat.at[1].set(jnp.array([0.0, 0.2, -0.3, 0.4])),
        scale=p.scale.at[1].set(-0.1),
        trans=p.trans.at[1].set(jnp.array([0.01, -0.01, 0.02])),
    )


@pytest.fixture(scope="module")
def config():
    return augment.AugmentConfig(heatmap_size=HS)


@pytest.fixture(scope="module")
def backgrounds(config):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.random((B * config.per_seed, S, S, 3)), jnp.float32)


@pytest.fixture(scope="module")
def generated(hand, K, seeds, config, backgrounds):
    """Textured from a smooth colour image, on explicit backgrounds; two keys."""
    yy, xx = (np.mgrid[0:S, 0:S] + 0.5) / S
    image = np.stack([xx, yy, 1 - 0.5 * xx], -1).astype(np.float32)
    images = jnp.asarray(np.stack([image, image[::-1]]))

    def run(seed):
        return augment.generate(
            seeds,
            images,
            K,
            key=jax.random.key(seed),
            model=hand,
            config=config,
            backgrounds=backgrounds,
            base_translation=BASE,
        )

    return run(0), run(0), run(1)


def test_batch_matches_the_input_pipeline(generated, K, seeds, hand, config):
    out = generated[0]
    joints = mesh(seeds, hand).joints[0]
    record = {
        "image": np.zeros((96, 96, 3), np.uint8),
        "mask": np.zeros((96, 96), np.uint8),
        "K": np.asarray(K[0]),
        "joints3d": np.asarray(joints),
        "visible": np.ones(21, bool),
    }
    real = pipeline.process(record, None, image_size=S, heatmap_size=HS)
    n = B * config.per_seed
    assert set(out.batch) == set(real) == set(pipeline.BATCH_KEYS)
    for name, value in real.items():
        got = out.batch[name]
        assert got.shape == (n,) + np.shape(value), name
        assert got.dtype == np.asarray(value).dtype, name
    assert np.all(out.batch["has_mask"]) and not np.any(out.batch["mirrored"])
    np.testing.assert_array_equal(out.batch["K"], np.repeat(np.asarray(K), config.per_seed, 0))
    # the real batch (here of one example) and the generated ones concatenate
    real_batch = {name: np.asarray(value)[None] for name, value in real.items()}
    both = augment.extend(real_batch, out.batch)
    assert both["image"].shape == (n + 1, S, S, 3) and both["visible"].dtype == bool
    np.testing.assert_array_equal(both["joints2d"][0], real["joints2d"])
    np.testing.assert_array_equal(both["heatmaps"][1:], out.batch["heatmaps"])
    with pytest.raises(ValueError, match="heatmaps"):
        augment.extend({**real_batch, "heatmaps": np.zeros((1, 21, 8, 8))}, out.batch)


def test_joints_lie_on_the_rendered_hand(generated, hand, K, config):
    out = generated[0]
    batch = {k: np.asarray(v) for k, v in out.batch.items()}
    # the 3D joints are those of the returned hands
    joints = mesh(out.params, hand).joints
    np.testing.assert_allclose(batch["joints3d"], joints, atol=1e-5)
    # their projection with K (in numpy) is the 2D joints
    proj = np.einsum("nij,nkj->nki", batch["K"], batch["joints3d"])
    uv = proj[..., :2] / proj[..., 2:]
    vis = batch["visible"]
    assert vis.mean() > 0.5 and not vis.all()
    np.testing.assert_allclose(batch["joints2d"][vis], uv[vis], atol=1e-3)
    assert np.all(batch["joints2d"][~vis] == 0)
    # every joint inside the crop projects onto the (2-pixel dilated) mask; visible ones
    # onto the mask itself
    mask = batch["mask"] > 0
    grown = mask.copy()
    for _ in range(2):
        g = np.pad(grown, ((0, 0), (1, 1), (1, 1)))
        grown = g[:, 1:-1, 1:-1] | g[:, :-2, 1:-1] | g[:, 2:, 1:-1]
        grown = grown | g[:, 1:-1, :-2] | g[:, 1:-1, 2:]
    col, row = np.floor(uv[..., 0]).astype(int), np.floor(uv[..., 1]).astype(int)
    inside = (col >= 0) & (col < S) & (row >= 0) & (row < S)
    assert inside.mean() > 0.9
    n_idx = np.broadcast_to(np.arange(len(uv))[:, None], col.shape)
    on = grown[n_idx, np.clip(row, 0, S - 1), np.clip(col, 0, S - 1)]
    assert np.all(on[inside])
    assert np.all(mask[n_idx, np.clip(row, 0, S - 1), np.clip(col, 0, S - 1)][vis])
    assert np.all(inside[vis])
    # heat maps peak at each visible joint's cell and are empty for hidden joints
    maps = batch["heatmaps"]
    peak = np.unravel_index(maps.reshape(*maps.shape[:2], -1).argmax(-1), (HS, HS))
    cell = uv / (S / HS)  # the peak cell's centre is within half a cell of the joint
    assert np.all(np.abs(peak[0][vis] + 0.5 - cell[..., 1][vis]) <= 0.5 + 1e-4)
    assert np.all(np.abs(peak[1][vis] + 0.5 - cell[..., 0][vis]) <= 0.5 + 1e-4)
    assert np.all(maps[~vis] == 0)
    # Eq. 8's c: 1.5 x the larger side of the visible joints' box
    side = [np.ptp(uv[i][vis[i]], 0).max() for i in range(len(uv))]
    np.testing.assert_allclose(batch["norm_size"], 1.5 * np.array(side), rtol=1e-4)


def test_mask_is_the_rendered_alpha_thresholded(generated, hand, K, config, backgrounds):
    out = generated[0]
    verts = mesh(out.params, hand).vertices
    camera = render.crop_camera(jnp.repeat(K, config.per_seed, 0), S)
    shaded = render.shade(verts, hand.faces, out.colors, camera, ambient=0.8, diffuse=0.2)
    alpha = np.asarray(shaded.alpha)
    np.testing.assert_allclose(out.alpha, alpha, atol=1e-5)
    mask = np.asarray(out.batch["mask"])
    assert set(np.unique(mask)) == {0.0, 1.0}
    sure = np.abs(alpha - 0.5) > 1e-4
    np.testing.assert_array_equal(mask[sure], (alpha > 0.5)[sure])
    assert np.all(np.asarray(out.overflow) == 0)
    # composited: background where alpha is 0, the shaded hand where it is 1
    image, bgs = np.asarray(out.batch["image"]), np.asarray(backgrounds)
    np.testing.assert_allclose(image[alpha == 0], bgs[alpha == 0], atol=1e-6)
    np.testing.assert_allclose(image[alpha == 1], np.asarray(shaded.rgb)[alpha == 1], atol=1e-5)
    assert 0.05 < (alpha == 1).mean() < 0.6


def test_new_shapes_and_rotations_keep_pose_and_root(generated, seeds, hand, config):
    out = generated[0]
    k = config.per_seed
    new = out.params
    shape = np.asarray(new.shape)
    assert np.all(np.abs(shape) <= config.shape_range)
    assert shape.std() > 1.0 and np.abs(shape).max() > 2.0
    assert not np.allclose(shape[0], shape[1])
    for name in ("pose", "scale", "trans"):
        np.testing.assert_array_equal(getattr(new, name), np.repeat(getattr(seeds, name), k, 0))
    # the rotation turns the seed about its middle MCP: the root stays put
    seed_root = mesh(seeds, hand).joints[:, 9]
    np.testing.assert_allclose(out.batch["joints3d"][:, 9], np.repeat(seed_root, k, 0), atol=1e-5)
    seed_rot = np.repeat(np.asarray(params.rotation(seeds)), k, 0)
    turn = np.asarray(params.rotation(new)) @ np.swapaxes(seed_rot, 1, 2)
    cos = (np.trace(turn, axis1=1, axis2=2) - 1) / 2
    angle = np.rad2deg(np.arccos(np.clip(cos, -1, 1)))
    assert np.all(angle > 0.5) and np.all(angle <= 90.0 + 1e-3)


def test_deterministic_for_a_key_and_finite(generated):
    first, again, other = generated
    for name in first.batch:
        np.testing.assert_array_equal(first.batch[name], again.batch[name])
        value = np.asarray(first.batch[name])
        assert np.all(np.isfinite(value)) if value.dtype != bool else True
    assert not np.allclose(first.params.shape, other.params.shape)
    assert not np.array_equal(first.batch["mask"], other.batch["mask"])


def test_colours_come_from_the_seed_image(hand, K, seeds):
    """A flat seed image gives its colour, exactly with ambient light only.

    No new shape or rotation and a seed shape of 0: the generated hand is the seed's.
    """
    colour = np.array([0.8, 0.3, 0.1], np.float32)
    images = jnp.broadcast_to(jnp.asarray(colour), (B, S, S, 3))
    flat = augment.AugmentConfig(
        per_seed=2,
        shape_range=0.0,
        rotation_deg=(0.0, 0.0, 0.0),
        ambient=1.0,
        diffuse=0.0,
        heatmap_size=HS,
    )
    seeds = seeds._replace(shape=jnp.zeros_like(seeds.shape))
    out = augment.generate(
        seeds, images, K, key=jax.random.key(5), model=hand, config=flat, base_translation=BASE
    )
    np.testing.assert_allclose(out.colors, np.broadcast_to(colour, out.colors.shape), atol=1e-6)
    alpha, image = np.asarray(out.alpha), np.asarray(out.batch["image"])
    assert (alpha == 1).sum() > 500
    np.testing.assert_allclose(image[alpha == 1], np.tile(colour, ((alpha == 1).sum(), 1)), 1e-5)
    seed_joints = mesh(seeds, hand).joints
    np.testing.assert_allclose(out.batch["joints3d"], np.repeat(seed_joints, 2, 0), atol=1e-5)
    # procedural backgrounds: textured, in range, different per example
    bg = image[alpha == 0]
    assert bg.min() >= 0 and bg.max() <= 1 and bg.std() > 0.05
    assert not np.allclose(image[0][alpha[0] == 0].mean(0), image[1][alpha[1] == 0].mean(0))


def test_vertex_colours_are_read_at_visible_projections(hand, K, seeds):
    red, blue = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    image = np.where((np.arange(S) < S // 2)[None, :, None], red, blue).astype(np.float32)
    images = jnp.asarray(np.broadcast_to(image, (B, S, S, 3)))
    verts = mesh(seeds, hand).vertices
    camera = render.crop_camera(K, S)
    colors, visible = augment.vertex_colors(
        verts, hand.faces, hand.v_template, images, camera, tolerance=0.01
    )
    colors, visible = np.asarray(colors), np.asarray(visible)
    u = np.asarray(render.project(verts, camera))[..., 0]
    left = visible & (u < S / 2 - 1)
    right = visible & (u > S / 2 + 1)
    assert left.sum() > 50 and right.sum() > 50
    np.testing.assert_allclose(colors[left], np.tile(red, (left.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(colors[right], np.tile(blue, (right.sum(), 1)), atol=1e-6)
    # hidden vertices copy the colour of a visible one of the same hand
    for b in range(B):
        seen, hidden = colors[b][visible[b]], colors[b][~visible[b]]
        assert np.all(np.abs(hidden[:, None] - seen[None]).max(-1).min(-1) < 1e-6)
    # vertices facing the camera are seen, those facing away are not (seed 0, open hand)
    normals = np.asarray(render.vertex_normals(verts, jnp.asarray(hand.faces)))[0]
    ray = np.asarray(verts[0]) / np.linalg.norm(verts[0], axis=-1)[:, None]
    towards = -np.sum(normals * ray, -1)  # cosine between the normal and the way to the camera
    assert visible[0][towards > 0.5].mean() > 0.85
    assert visible[0][towards < -0.5].mean() < 0.1


def test_config_from_default_and_bad_input(hand, K, seeds):
    cfg = default.get_config()
    made = augment.AugmentConfig.from_config(cfg.augment, cfg.data)
    assert made.per_seed == cfg.augment.per_seed and made.heatmap_size == cfg.data.heatmap_size
    assert hash(made) == hash(dataclasses.replace(made))
    with pytest.raises(ValueError, match="rotation_deg"):
        augment.AugmentConfig(rotation_deg=(30.0, 30.0))
    with pytest.raises(ValueError, match="backgrounds must be"):
        augment.generate(
            seeds,
            jnp.zeros((B, S, S, 3)),
            K,
            key=jax.random.key(0),
            model=hand,
            config=made,
            backgrounds=jnp.zeros((B, S, S, 3)),
        )
