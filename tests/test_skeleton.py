"""handfit.skeleton: the joint orders and maps of docs/conventions.md, "Joints"."""

import numpy as np
import pytest

from handfit import skeleton


@pytest.mark.parametrize("order", ["rhd", "stb", "mano"])
def test_maps_are_permutations_and_round_trip(order):
    idx = np.asarray(skeleton.ORDERS[order])
    assert sorted(idx) == list(range(21))
    joints = np.random.default_rng(0).normal(size=(3, 21, 3))
    np.testing.assert_array_equal(
        skeleton.from_canonical(skeleton.to_canonical(joints, order), order), joints
    )


def test_rhd_and_stb_maps_put_named_joints_in_place():
    # RHD: 0 wrist, 1-4 thumb tip..mcp. Canonical thumb tip (4) is RHD's 1.
    rhd = np.arange(21)[:, None] * np.ones((1, 2))
    canon = skeleton.to_canonical(rhd, "rhd")
    assert canon[4, 0] == 1 and canon[1, 0] == 4 and canon[20, 0] == 17
    # STB: 1-4 little mcp->tip; canonical pinky mcp (17) is STB's 1, thumb tip (4) is STB's 20.
    canon = skeleton.to_canonical(rhd, "stb")
    assert canon[17, 0] == 1 and canon[4, 0] == 20
    assert skeleton.JOINT_NAMES[skeleton.MIDDLE_MCP] == "middle_mcp"
    assert [skeleton.JOINT_NAMES[i] for i in skeleton.FINGERTIPS] == [
        f"{f}_tip" for f in skeleton.FINGERS
    ]


def test_bones_and_reference_bone():
    joints = np.zeros((21, 3))
    joints[10] = [0.0, 0.03, 0.04]
    assert skeleton.reference_bone_length(joints) == pytest.approx(0.05)
    lengths = skeleton.bone_lengths(joints)
    assert lengths.shape == (20,) and lengths.max() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown joint order"):
        skeleton.to_canonical(joints, "nyu")
