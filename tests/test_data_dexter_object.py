"""Dexter+Object reader on a fixture in its own format (txt lines in mm, BMP images)."""

import os

import fixtures_data as fx
import numpy as np
import pytest

from handfit.data import dexter_object as do
from handfit.data import example as ex


@pytest.fixture(scope="module")
def dexter_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("dexter"))
    truth = fx.write_dexter(data_dir, np.random.default_rng(20), n=3, missing=((0, 1, 2),))
    return data_dir, truth


def test_fingertips_in_colour_frame(dexter_dir):
    data_dir, truth = dexter_dir
    reader = do.DexterObject(data_dir, ["Grasp1", "Pinch"])
    assert len(reader) == 6
    assert reader.num_missing_tips == 1
    tips = list(fx.DO_TIPS)
    others = [j for j in range(21) if j not in tips]
    for index in range(6):
        seq, i = ("Grasp1", "Pinch")[index // 3], index % 3
        example = reader[index]
        expected = truth[seq][i]
        np.testing.assert_allclose(example.joints3d[tips], expected, atol=1e-5)
        assert np.isnan(example.joints3d[others]).all()
        assert not example.visible[others].any()
        np.testing.assert_array_equal(example.visible[tips], np.isfinite(expected).all(-1))
        labelled = example.visible
        np.testing.assert_allclose(
            example.joints2d[labelled], fx.project(expected, fx.DO_K)[labelled[tips]], atol=0.05
        )
        assert (
            np.abs(ex.project(example.joints3d, example.K) - example.joints2d)[labelled].max() < 0.5
        )
        assert example.image.shape == (480, 640, 3)
        assert example.image_path.endswith(f"Color_{i:04d}.bmp")  # sorted pairing
        assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])
        assert example.side == "left"
    missing = reader[1]
    assert np.isnan(missing.joints3d[12]).all() and not missing.visible[12]


def test_mirror_keeps_nan_joints_invisible(dexter_dir):
    data_dir, _ = dexter_dir
    example = do.DexterObject(data_dir, ["Grasp1"], mirror_left=True)[1]
    assert example.side == "right"
    assert not example.visible[12] and example.visible.sum() == 4
    assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])


def test_count_mismatch_and_bad_lines(tmp_path):
    fx.write_dexter(str(tmp_path), np.random.default_rng(21), sequences=("Rigid",), n=2, missing=())
    base = tmp_path / "dexter+object" / "data" / "Rigid"
    os.remove(base / "color" / "Color_0001.bmp")
    with pytest.raises(ex.AnnotationError, match=r"1 colour images.*2 annotated frames"):
        do.DexterObject(tmp_path, ["Rigid"])
    fx.write_dexter(str(tmp_path), np.random.default_rng(21), sequences=("Rigid",), n=2, missing=())
    path = base / "annotations" / "Rigid3D.txt"
    lines = path.read_text().splitlines()
    lines[1] = "1.0, 2.0; 3, 4, 5; 6, 7, 8; 9, 1, 2; 3, 4, 5;"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ex.AnnotationError, match=r"Rigid3D.txt: line 2: group 0 has 2 numbers"):
        do.DexterObject(tmp_path, ["Rigid"])
    lines[1] = "1, 2, 3; 4, 5, 6;"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ex.AnnotationError, match=r"line 2: 2 ';'-separated groups"):
        do.DexterObject(tmp_path, ["Rigid"])


def test_missing_annotation_file(tmp_path):
    fx.write_dexter(str(tmp_path), np.random.default_rng(22), sequences=("Rigid",), n=1, missing=())
    with pytest.raises(ex.DatasetNotFoundError) as info:
        do.DexterObject(tmp_path, ["Rigid", "Rotate"])
    message = str(info.value)
    assert "Rotate3D.txt" in message and "Dexter+Object" in message
    assert "handtracker.mpi-inf.mpg.de" in message
