"""The open hand model: a closed skin, MANO's tree, plausible shapes and poses, reproducible."""

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from handfit import mano, skeleton
from handfit.assets import build_open_hand


@pytest.fixture(scope="module")
def model():
    return mano.open_hand()


def _joints(model, pose=None, shape=None):
    pose = np.zeros((1, 45)) if pose is None else pose
    shape = np.zeros((1, 10)) if shape is None else shape
    out = mano.forward(model, jnp.asarray(pose, jnp.float32), jnp.asarray(shape, jnp.float32))
    return np.asarray(out.vertices), np.asarray(out.joints)


def test_one_closed_consistently_oriented_skin(model):
    mesh = trimesh.Trimesh(np.asarray(model.v_template), np.asarray(model.faces), process=False)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0, "faces must be counter-clockwise seen from outside"
    assert mesh.body_count == 1
    assert mesh.area_faces.min() > 0
    assert model.name == build_open_hand.NAME and model.side == "right"


def test_mano_tree_weights_and_regressor(model):
    assert model.parents == skeleton.MANO_PARENTS
    w = np.asarray(model.weights)
    assert w.min() >= 0 and np.allclose(w.sum(1), 1, atol=1e-5)
    assert (w.max(0) > 0.5).all(), "every joint must own some vertices"
    designed = build_open_hand.skeleton()["joints"]
    regressed = np.asarray(model.j_regressor) @ np.asarray(model.v_template)
    np.testing.assert_allclose(regressed, designed, atol=1e-5)


def test_size_and_fingertips(model):
    verts, joints = _joints(model)
    length = np.linalg.norm(joints[0, 12] - joints[0, 0])
    assert 0.18 <= length <= 0.19
    for finger, tip in zip(skeleton.FINGERS, skeleton.FINGERTIPS):
        direction = joints[0, tip] - joints[0, tip - 1]
        direction /= np.linalg.norm(direction)
        near = np.linalg.norm(verts[0] - joints[0, tip], axis=-1) < 0.02
        reach = (verts[0][near] - joints[0, tip - 1]) @ direction
        tip_reach = (joints[0, tip] - joints[0, tip - 1]) @ direction
        assert tip_reach >= reach.max() - 1e-6, f"{finger} tip is not the furthest vertex"


def test_shape_directions_do_what_they_say(model):
    _, j0 = _joints(model)

    def with_beta(k, value):
        b = np.zeros((1, 10))
        b[0, k] = value
        return _joints(model, shape=b)[1][0]

    def finger_length(j, tip):
        return np.linalg.norm(j[tip] - j[tip - 3])

    assert np.linalg.norm(with_beta(0, 1)[12]) / np.linalg.norm(j0[0, 12]) == pytest.approx(
        1.06, abs=0.005
    )
    longer = with_beta(1, 1)
    assert finger_length(longer, 12) / finger_length(j0[0], 12) == pytest.approx(1.06, abs=0.01)
    assert np.linalg.norm(longer[9] - longer[0]) == pytest.approx(
        np.linalg.norm(j0[0, 9]), abs=1e-3
    )
    wider = with_beta(2, 1)
    assert abs(wider[5, 0] - wider[17, 0]) > abs(j0[0, 5, 0] - j0[0, 17, 0]) + 0.002


def test_random_shapes_are_plausible_adult_hands(model):
    rng = np.random.default_rng(0)
    betas = rng.normal(size=(200, 10))
    out = mano.forward(model, jnp.zeros((200, 45)), jnp.asarray(betas, jnp.float32))
    joints = np.asarray(out.joints)
    length = np.linalg.norm(joints[:, 12] - joints[:, 0], axis=-1)
    assert 0.15 < length.min() and length.max() < 0.23
    assert 0.012 < length.std() < 0.03
    assert np.isfinite(np.asarray(out.vertices)).all()


def test_pose_space(model):
    comps = np.asarray(model.hands_components)
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-5)
    frames, limits = np.asarray(model.joint_frames), np.asarray(model.joint_limits)
    np.testing.assert_allclose(
        np.einsum("jab,jcb->jac", frames, frames), np.broadcast_to(np.eye(3), (15, 3, 3)), atol=1e-5
    )
    assert (limits[..., 0] < limits[..., 1]).all()
    local_mean = np.einsum("jab,jb->ja", frames, np.asarray(model.hands_mean).reshape(15, 3))
    assert (local_mean >= limits[..., 0] - 1e-4).all() and (
        local_mean <= limits[..., 1] + 1e-4
    ).all()


def test_flexion_curls_fingers_towards_the_palm(model):
    frames = np.asarray(model.joint_frames)
    local = np.zeros((15, 3))
    local[:, 0] = 0.5  # flex every joint
    pose = np.einsum("jab,ja->jb", frames, local).reshape(1, 45)
    _, flat = _joints(model)
    _, fist = _joints(model, pose=pose)
    # the palm faces -z: curled fingertips come forward (towards -z) and down towards the wrist
    for tip in skeleton.FINGERTIPS[1:]:
        assert fist[0, tip, 2] < flat[0, tip, 2] - 0.03
        assert fist[0, tip, 1] > flat[0, tip, 1] + 0.03


def test_rebuild_reproduces_the_committed_model():
    built = build_open_hand.build()
    with np.load(mano.OPEN_HAND_PATH) as committed:
        assert sorted(committed.files) == sorted(built)
        for key, value in built.items():
            if value.dtype.kind == "f":
                np.testing.assert_allclose(committed[key], value, atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(committed[key], value, err_msg=key)


def test_sampled_poses_stay_within_the_joint_limits(model):
    import jax

    poses = mano.sample_poses(jax.random.key(0), model, 64)
    assert poses.shape == (64, 45)
    local = np.einsum(
        "jab,njb->nja", np.asarray(model.joint_frames), np.asarray(poses).reshape(64, 15, 3)
    )
    limits = np.asarray(model.joint_limits)
    assert (local >= limits[..., 0] - 1e-5).all() and (local <= limits[..., 1] + 1e-5).all()
    assert local[..., 0].std(0).min() > 0.1, "flexion must vary"
    np.testing.assert_array_equal(poses, mano.sample_poses(jax.random.key(0), model, 64))
