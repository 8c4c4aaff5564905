"""The canonical example's helpers: mirroring, projection, array checks."""

import fixtures_data as fx
import numpy as np
import pytest

from handfit.data import example as ex


def _example(rng):
    joints3d = fx.make_hand(rng, 0.5)
    K = np.array([[500.0, 2.0, 90.0], [0, 510.0, 60.0], [0, 0, 1]], np.float32)
    image = fx.background(128, 200, 0)
    joints2d = ex.project(joints3d, K)
    fx.paint_marker(image, joints2d[fx.THUMB_TIP])
    mask = np.zeros((128, 200), np.uint8)
    mask[10:20, 30:35] = 1
    return ex.Example(
        image=image,
        K=K,
        joints3d=joints3d,
        joints2d=joints2d,
        visible=np.ones(21, bool),
        side="left",
        dataset="test",
        sample_id="s0",
        image_path="x.png",
        mask=mask,
        vertices=joints3d[:5].copy(),
        mano_pose=np.arange(48, dtype=np.float32),
        mano_uv_root=np.array([10.0, 20.0], np.float32),
    )


def test_mirror_is_consistent_and_an_involution():
    original = _example(np.random.default_rng(0))
    mirrored = ex.mirror(original)
    assert mirrored.side == "right" and mirrored.mirrored
    np.testing.assert_allclose(mirrored.joints2d[:, 0], 200 - original.joints2d[:, 0], atol=1e-4)
    np.testing.assert_allclose(mirrored.joints3d[:, 0], -original.joints3d[:, 0])
    np.testing.assert_allclose(
        ex.project(mirrored.joints3d, mirrored.K), mirrored.joints2d, atol=1e-3
    )
    assert mirrored.K[0, 2] == pytest.approx(200 - 90.0) and mirrored.K[0, 1] == pytest.approx(-2)
    assert fx.marker_at(mirrored.image, mirrored.joints2d[fx.THUMB_TIP])
    np.testing.assert_array_equal(mirrored.mask[10:20, 200 - 35 : 200 - 30], 1)
    assert mirrored.mask.sum() == original.mask.sum()
    np.testing.assert_allclose(mirrored.vertices[:, 0], -original.vertices[:, 0])
    np.testing.assert_allclose(
        mirrored.mano_pose.reshape(-1, 3)[:, 1:], -original.mano_pose.reshape(-1, 3)[:, 1:]
    )
    np.testing.assert_allclose(mirrored.mano_uv_root, [190.0, 20.0])
    back = ex.mirror(mirrored)
    assert back.side == "left" and not back.mirrored
    for field in ("image", "mask", "K", "joints3d", "joints2d", "vertices", "mano_pose"):
        np.testing.assert_allclose(getattr(back, field), getattr(original, field), atol=1e-4)


def test_check_array_messages():
    with pytest.raises(
        ex.AnnotationError, match=r"f.json: field xyz has shape \(2, 3\), expected \(N, 21, 3\)"
    ):
        ex.check_array(np.zeros((2, 3)), (None, 21, 3), dataset="D", file="f.json", field="xyz")
    with pytest.raises(ex.AnnotationError, match="not a numeric array"):
        ex.check_array([[1, 2], [3]], (2, 2), dataset="D", file="f", field="K")
    assert ex.check_array([[1, 2]], (1, 2), dataset="D", file="f", field="a").dtype == np.float32
