"""The objective's 2D targets: the visible joints, or every labelled one (supervise_occluded)."""

import jax
import jax.numpy as jnp
import numpy as np

from handfit import mano, objective, params
from handfit.data import pipeline

SIZE, HS = 32, 8


def batch_with_occluded_joints():
    """Two crops of the posed open hand as the pipeline gives them: joints 3-6 of the first
    occluded (2D zeroed, no heat map); of the second, joint 19 occluded and outside the crop,
    joint 20 unlabelled (3D zeroed too)."""
    hand = mano.open_hand()
    p = params.MeshParams.initial(2, hand, jnp.float32)
    p = p._replace(trans=jnp.array([[0.0, 0.0, 0.0], [0.01, -0.01, 0.02]]))
    joints = np.asarray(params.mesh(p, hand).joints, np.float64)
    joints[1, 19, 0] += 0.5
    f = 2.0 * SIZE
    K = np.array([[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1]], np.float32)
    proj = joints @ K.T
    uv = proj[..., :2] / proj[..., 2:]
    visible = np.ones((2, 21), bool)
    visible[0, 3:7] = False
    visible[1, 19:] = False
    joints[1, 20] = 0.0
    seen = np.where(visible[..., None], uv, 0.0).astype(np.float32)
    maps = [
        pipeline.heatmaps(seen[b], visible[b], image_size=SIZE, heatmap_size=HS, sigma=1.0)
        for b in range(2)
    ]
    batch = dict(
        image=jnp.zeros((2, SIZE, SIZE, 3)),
        K=jnp.asarray(np.repeat(K[None], 2, 0)),
        joints3d=jnp.asarray(joints, jnp.float32),
        joints2d=jnp.asarray(seen),
        visible=jnp.asarray(visible),
        heatmaps=jnp.asarray(np.stack(maps)),
    )
    return batch, uv


def test_by_default_the_targets_are_the_visible_joints_of_the_pipeline():
    batch, _ = batch_with_occluded_joints()
    target = objective.targets2d(batch, objective.LossOptions())
    np.testing.assert_array_equal(target.scored, batch["visible"])
    np.testing.assert_array_equal(target.joints2d, batch["joints2d"])
    np.testing.assert_array_equal(target.heatmaps, jnp.moveaxis(batch["heatmaps"], 1, -1))


def test_supervise_occluded_adds_the_occluded_joints_at_their_projection():
    batch, uv = batch_with_occluded_joints()
    options = objective.LossOptions(supervise_occluded=True, heatmap_sigma=1.0)
    target = jax.jit(objective.targets2d, static_argnums=1)(batch, options)
    assert not 0 <= uv[1, 19, 0] <= SIZE
    labelled = np.ones((2, 21), bool)
    labelled[1, 19:] = False  # outside the crop; unlabelled
    np.testing.assert_array_equal(target.scored, labelled)
    np.testing.assert_allclose(target.joints2d[0, 3:7], uv[0, 3:7], atol=1e-3)
    np.testing.assert_array_equal(target.joints2d[1, 19:], np.zeros((2, 2)))
    np.testing.assert_array_equal(target.joints2d[0, 7:], batch["joints2d"][0, 7:])
    maps = np.moveaxis(np.asarray(target.heatmaps), -1, 1)  # [B, 21, hs, hs]
    want = pipeline.heatmaps(uv[0], labelled[0], image_size=SIZE, heatmap_size=HS, sigma=1.0)
    np.testing.assert_allclose(maps[0], want, atol=1e-5)  # occluded joints get their maps
    assert maps[0, 3].max() > 0.5 and np.all(maps[1, 19:] == 0)
