"""STB reader on a fixture written in STB's own format (.mat labels in mm, 640x480 PNGs)."""

import fixtures_data as fx
import numpy as np
import pytest
import scipy.io

from handfit.data import example as ex
from handfit.data import stb


@pytest.fixture(scope="module")
def stb_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("stb"))
    truth = fx.write_stb(data_dir, np.random.default_rng(10), n=2)
    return data_dir, truth


def test_bb_left_and_right_cameras(stb_dir):
    data_dir, truth = stb_dir
    reader = stb.STB(data_dir, "test")
    assert len(reader) == 2 * 2 * 2  # sequences x cameras x frames
    index = 0
    for seq in ("B1Counting", "B1Random"):
        for camera in ("left", "right"):
            for i in range(2):
                example = reader[index]
                index += 1
                expected = truth[seq]["BB"][i].copy()
                if camera == "right":
                    expected[:, 0] -= fx.STB_BASELINE
                np.testing.assert_allclose(example.joints3d, expected, atol=1e-5)
                np.testing.assert_allclose(
                    example.joints2d, fx.project(expected, fx.STB_BB_K), atol=0.05
                )
                assert (
                    np.abs(ex.project(example.joints3d, example.K) - example.joints2d).max() < 0.5
                )
                assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])
                assert example.image.shape == (480, 640, 3)
                assert example.side == "left" and example.joint0 == "palm"
                assert example.visible.all()
                assert example.sample_id == f"{seq}/BB_{camera}/{i}"


def test_sk_depth_to_colour(stb_dir):
    data_dir, truth = stb_dir
    reader = stb.STB(data_dir, sequences=["B1Random"], sensor="SK")
    assert len(reader) == 2
    for i in range(2):
        example = reader[i]
        expected = truth["B1Random"]["SK"][i]
        np.testing.assert_allclose(example.joints3d, expected, atol=1e-5)
        np.testing.assert_allclose(example.K, fx.STB_SK_K, atol=1e-4)
        assert np.abs(fx.project(expected, fx.STB_SK_K) - example.joints2d).max() < 0.5
        assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])


def test_wrist_root_and_mirroring(stb_dir):
    data_dir, truth = stb_dir
    hand = truth["B1Counting"]["BB"][0]
    wrist = stb.STB(data_dir, "test", cameras=["left"], root="wrist")[0]
    np.testing.assert_allclose(wrist.joints3d[0], hand[13] + 2.0 * (hand[0] - hand[13]), atol=1e-5)
    assert wrist.joint0 == "wrist"
    mirrored = stb.STB(data_dir, "test", cameras=["left"], mirror_left=True)[0]
    assert mirrored.side == "right"
    np.testing.assert_allclose(mirrored.joints3d, hand * np.array([-1, 1, 1]), atol=1e-5)
    assert fx.marker_at(mirrored.image, mirrored.joints2d[fx.THUMB_TIP])


def test_splits():
    assert stb.SPLITS["test"] == ("B1Counting", "B1Random")
    assert len(stb.SPLITS["train"]) == 10
    assert all(not s.startswith("B1") for s in stb.SPLITS["train"])


def test_missing_label_file_is_named(stb_dir, tmp_path):
    fx.write_stb(str(tmp_path), np.random.default_rng(11), sequences=("B1Counting",), n=1)
    with pytest.raises(ex.DatasetNotFoundError) as info:
        stb.STB(tmp_path, "test")  # B1Random is missing
    message = str(info.value)
    assert "B1Random_BB.mat" in message and "STB" in message
    assert "icip17_stereo_hand_pose_dataset" in message
    with pytest.raises(ex.DatasetNotFoundError, match="STB"):
        stb.STB(tmp_path / "absent", "test")


def test_mat_without_handpara_or_wrong_shape(tmp_path):
    fx.write_stb(str(tmp_path), np.random.default_rng(12), sequences=("B1Counting",), n=1)
    path = tmp_path / "STB" / "labels" / "B1Counting_BB.mat"
    scipy.io.savemat(path, {"handpara": np.zeros((3, 21, 1))})
    with pytest.raises(ex.AnnotationError, match=r"B1Counting_BB.mat.*handPara"):
        stb.STB(tmp_path, sequences=["B1Counting"])
    scipy.io.savemat(path, {"handPara": np.zeros((21, 3, 1))})
    with pytest.raises(ex.AnnotationError, match=r"\(3, 21, N\)"):
        stb.STB(tmp_path, sequences=["B1Counting"])
    path.write_bytes(b"not a mat file")
    with pytest.raises(ex.AnnotationError, match="B1Counting_BB.mat"):
        stb.STB(tmp_path, sequences=["B1Counting"])
