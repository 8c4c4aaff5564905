"""RHD reader on a fixture written in RHD's own format."""

import os
import pickle

import fixtures_data as fx
import fixtures_pickle as fp
import numpy as np
import pytest

from handfit.data import example as ex
from handfit.data import rhd


@pytest.fixture(scope="module")
def rhd_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("rhd"))
    truth = fx.write_rhd(data_dir, np.random.default_rng(0), "evaluation", n=3)
    return data_dir, truth


def test_reads_the_mask_rule_hand_in_canonical_order(rhd_dir):
    data_dir, truth = rhd_dir
    reader = rhd.RHD(data_dir, "evaluation")
    assert len(reader) == 3
    for i, t in enumerate(truth):
        example = reader[i]
        assert example.side == t["mask_side"]
        hand = t[example.side]
        np.testing.assert_allclose(example.joints3d, hand, atol=1e-6)
        np.testing.assert_allclose(example.K, t["K"], atol=1e-5)
        projected = ex.project(example.joints3d, example.K)
        assert np.abs(projected - example.joints2d).max() < 0.5
        rows = slice(0, 21) if example.side == "left" else slice(21, 42)
        vis_raw = t["vis"][rows]
        np.testing.assert_array_equal(
            example.visible, vis_raw[[fx.RHD_RAW.index(n) for n in fx.CANONICAL]]
        )
        assert example.image.shape == (320, 320, 3) and example.image.dtype == np.uint8
        assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])
        region = t["left_region"] if example.side == "left" else t["right_region"]
        expected_mask = np.zeros((320, 320), np.uint8)
        expected_mask[region] = 1
        np.testing.assert_array_equal(example.mask, expected_mask)
        assert example.sample_id == f"evaluation/{t['sid']:05d}"
        assert example.image_path.endswith(f"{t['sid']:05d}.png")
        assert example.joint0 == "wrist"


def test_keypoint_rule_and_forced_hands(rhd_dir):
    data_dir, truth = rhd_dir
    by_keypoints = rhd.RHD(data_dir, "evaluation", hand="keypoints")
    for i, t in enumerate(truth):
        example = by_keypoints.get(i, load_image=False)
        assert example.side == t["keypoint_side"]
        assert example.image is None
        np.testing.assert_allclose(example.joints3d, t[example.side], atol=1e-6)
    right = rhd.RHD(data_dir, "evaluation", hand="right")
    np.testing.assert_allclose(right[0].joints3d, truth[0]["right"], atol=1e-6)


def test_palm_root(rhd_dir):
    data_dir, truth = rhd_dir
    example = rhd.RHD(data_dir, "evaluation", root="palm")[1]
    hand = truth[1][example.side]
    np.testing.assert_allclose(example.joints3d[0], 0.5 * (hand[0] + hand[9]), atol=1e-6)
    np.testing.assert_allclose(example.joints3d[1:], hand[1:], atol=1e-6)
    assert example.joint0 == "palm"
    assert np.abs(ex.project(example.joints3d, example.K) - example.joints2d).max() < 0.5


def test_mirror_left_gives_right_hands(rhd_dir):
    data_dir, truth = rhd_dir
    reader = rhd.RHD(data_dir, "evaluation", mirror_left=True)
    example = reader[0]  # the left hand is chosen for sample 0
    assert truth[0]["mask_side"] == "left"
    assert example.side == "right" and example.mirrored
    np.testing.assert_allclose(example.joints3d[:, 0], -truth[0]["left"][:, 0], atol=1e-6)
    assert np.abs(ex.project(example.joints3d, example.K) - example.joints2d).max() < 0.5
    assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])
    assert not reader[1].mirrored  # already a right hand


def test_missing_dataset_names_path_source_and_layout(tmp_path):
    with pytest.raises(ex.DatasetNotFoundError) as info:
        rhd.RHD(tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "RHD" in message
    assert "RenderedHandposeDataset" in message and "RHD_published_v2" in message
    (tmp_path / "RHD_published_v2").mkdir()
    with pytest.raises(ex.DatasetNotFoundError, match="anno_training.pickle"):
        rhd.RHD(tmp_path, "training")


def test_bad_shape_names_file_sample_and_field(tmp_path):
    fx.write_rhd(str(tmp_path), np.random.default_rng(1), "training", n=1)
    path = tmp_path / "RHD_published_v2" / "training" / "anno_training.pickle"
    with open(path, "rb") as f:
        annos = pickle.load(f)
    annos[3]["xyz"] = annos[3]["xyz"][:21]
    with open(path, "wb") as f:
        pickle.dump(annos, f, protocol=2)
    with pytest.raises(ex.AnnotationError) as info:
        rhd.RHD(tmp_path, "training")
    message = str(info.value)
    assert str(path) in message and "'xyz'" in message and "sample 3" in message
    assert "(42, 3)" in message and "(21, 3)" in message


def test_nan_and_truncated_pickle_are_errors(tmp_path):
    fx.write_rhd(str(tmp_path), np.random.default_rng(2), "training", n=1)
    path = tmp_path / "RHD_published_v2" / "training" / "anno_training.pickle"
    data = path.read_bytes()
    with open(path, "rb") as f:
        annos = pickle.load(f)
    annos[3]["K"][0, 0] = np.nan
    with open(path, "wb") as f:
        pickle.dump(annos, f, protocol=2)
    with pytest.raises(ex.AnnotationError, match="'K'.*NaN"):
        rhd.RHD(tmp_path, "training")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(pickle.UnpicklingError, match="anno_training.pickle"):
        rhd.RHD(tmp_path, "training")


def test_a_python_2_pickle_loads_and_crafted_matrices_are_refused(tmp_path):
    """RHD's annotations are a Python 2 pickle (hence latin-1); they pass safe_pickle's checks."""
    fx.write_rhd(str(tmp_path), np.random.default_rng(4), "training", n=1)
    path = tmp_path / "RHD_published_v2" / "training" / "anno_training.pickle"
    with open(path, "rb") as f:
        annos = pickle.load(f)
    path.write_bytes(fp.dumps_py2(annos))
    reader = rhd.RHD(tmp_path, "training")
    np.testing.assert_array_equal(reader.xyz[0], annos[3]["xyz"])
    np.testing.assert_array_equal(reader.K[0], annos[3]["K"])
    annos[3]["K"] = fp.CscMatrix([1.0], [10**9], [0, 1, 1, 1], (3, 3))  # would crash on use
    path.write_bytes(fp.dumps_py2(annos))
    with pytest.raises(ValueError, match=r"anno_training.pickle\[3\]\['K'\]: .*outside \[0, 3\)"):
        rhd.RHD(tmp_path, "training")


def test_wrong_image_size_and_missing_image(tmp_path):
    truth = fx.write_rhd(str(tmp_path), np.random.default_rng(3), "training", n=1)
    color = tmp_path / "RHD_published_v2" / "training" / "color" / f"{truth[0]['sid']:05d}.png"
    from PIL import Image

    Image.fromarray(np.zeros((300, 320, 3), np.uint8)).save(color)
    reader = rhd.RHD(tmp_path, "training")
    with pytest.raises(ex.AnnotationError, match=r"training/00003.*320x300"):
        reader[0]
    os.remove(color)
    with pytest.raises(ex.DatasetNotFoundError, match="00003.png"):
        reader[0]
    with pytest.raises(IndexError):
        reader[1]


def test_a_huge_image_is_refused_naming_the_file(tmp_path):
    truth = fx.write_rhd(str(tmp_path), np.random.default_rng(4), "training", n=1)
    color = tmp_path / "RHD_published_v2" / "training" / "color" / f"{truth[0]['sid']:05d}.png"
    fx.write_huge_png(color)  # PIL refuses to decode it (a decompression bomb)
    with pytest.raises(ex.AnnotationError, match=rf"{color}' is too large.*expected 320x320"):
        rhd.RHD(tmp_path, "training")[0]


def test_a_colour_mask_is_refused_not_read_as_class_ids(tmp_path):
    from PIL import Image

    truth = fx.write_rhd(str(tmp_path), np.random.default_rng(5), "training", n=1)
    path = tmp_path / "RHD_published_v2" / "training" / "mask" / f"{truth[0]['sid']:05d}.png"
    ids = np.asarray(Image.open(path))
    # The same ids as grey levels in three equal channels: read as they are.
    Image.fromarray(np.repeat(ids[..., None], 3, -1)).save(path)
    np.testing.assert_array_equal(rhd.RHD(tmp_path, "training")._class_mask(0), ids)
    # A colour rendering of the classes (e.g. re-saved from a viewer): refused.
    palette = np.array([[0, 0, 0]] + [[7 * i % 256, 50, 255 - i] for i in range(1, 34)], np.uint8)
    Image.fromarray(palette[ids]).save(path)
    with pytest.raises(ex.AnnotationError, match=rf"mask '{path}' is a colour image"):
        rhd.RHD(tmp_path, "training")[0]
