"""FreiHAND reader on a fixture in its own format (json annotations, 224x224 JPEGs)."""

import json
import os

import fixtures_data as fx
import numpy as np
import pytest

from handfit.data import example as ex
from handfit.data import freihand


@pytest.fixture(scope="module")
def frei_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("frei"))
    truth = fx.write_freihand(data_dir, np.random.default_rng(30), n=2)
    return data_dir, truth


def test_four_versions_share_annotations(frei_dir):
    data_dir, truth = frei_dir
    reader = freihand.FreiHAND(data_dir, "training")
    assert len(reader) == 8
    for index in range(8):
        k, i = divmod(index, 2)
        example = reader[index]
        assert example.image_path.endswith(f"{i + 2 * k:08d}.jpg")
        assert example.mask_path.endswith(f"{i:08d}.jpg")
        np.testing.assert_allclose(example.joints3d, truth["xyz"][i], atol=1e-6)
        np.testing.assert_allclose(example.K, truth["K"][i], atol=1e-5)
        assert np.abs(ex.project(example.joints3d, example.K) - example.joints2d).max() < 0.5
        assert fx.marker_at(example.image, example.joints2d[fx.THUMB_TIP])
        np.testing.assert_allclose(example.vertices, truth["verts"][i], atol=1e-6)
        theta = truth["mano"][i]
        np.testing.assert_allclose(example.mano_pose, theta[:48], atol=1e-6)
        np.testing.assert_allclose(example.mano_shape, theta[48:58], atol=1e-6)
        np.testing.assert_allclose(example.mano_uv_root, theta[58:60], atol=1e-6)
        np.testing.assert_allclose(example.mano_scale, theta[60], atol=1e-6)
        assert example.mask.dtype == np.uint8 and set(np.unique(example.mask)) <= {0, 1}
        assert (example.mask == truth["masks"][i]).mean() > 0.995
        assert example.side == "right" and example.visible.all()
    np.testing.assert_allclose(reader.scale, truth["scale"], atol=1e-6)


def test_version_subset(frei_dir):
    data_dir, _ = frei_dir
    reader = freihand.FreiHAND(data_dir, "training", versions=["auto"], with_vertices=False)
    assert len(reader) == 2
    assert reader.image_path(1).endswith(f"{1 + 2 * 3:08d}.jpg")
    assert reader[1].vertices is None


def test_evaluation_split_and_missing_labels(tmp_path):
    truth = fx.write_freihand(str(tmp_path), np.random.default_rng(31), n=2, split="evaluation")
    reader = freihand.FreiHAND(tmp_path, "evaluation")
    assert len(reader) == 2 and reader[1].mask is None
    np.testing.assert_allclose(reader[1].joints3d, truth["xyz"][1], atol=1e-6)
    os.remove(tmp_path / "FreiHAND_pub_v2" / "evaluation_xyz.json")
    with pytest.raises(ex.DatasetNotFoundError, match="evaluation_xyz.json"):
        freihand.FreiHAND(tmp_path, "evaluation")
    unlabelled = freihand.FreiHAND(tmp_path, "evaluation", require_labels=False)[0]
    assert np.isnan(unlabelled.joints3d).all() and not unlabelled.visible.any()


def test_bad_shapes_and_nan(tmp_path):
    fx.write_freihand(str(tmp_path), np.random.default_rng(32), n=2)
    root = tmp_path / "FreiHAND_pub_v2"
    mano = json.loads((root / "training_mano.json").read_text())
    (root / "training_mano.json").write_text(json.dumps([m[0][:58] for m in mano]))
    with pytest.raises(ex.AnnotationError) as info:
        freihand.FreiHAND(tmp_path)
    message = str(info.value)
    assert "training_mano.json" in message and "(2, 58)" in message and "(N, 1, 61)" not in message
    assert "(2, 1, 61)" in message
    (root / "training_mano.json").write_text(json.dumps(mano))
    xyz = json.loads((root / "training_xyz.json").read_text())
    xyz[1][3][2] = float("nan")
    (root / "training_xyz.json").write_text(json.dumps(xyz))
    with pytest.raises(ex.AnnotationError, match=r"training_xyz.json.*NaN.*\[1, 3, 2\]"):
        freihand.FreiHAND(tmp_path)


def test_missing_root_names_source(tmp_path):
    with pytest.raises(ex.DatasetNotFoundError) as info:
        freihand.FreiHAND(tmp_path)
    message = str(info.value)
    assert "FreiHAND" in message and "FreihandDataset" in message
    assert os.path.join(str(tmp_path), "FreiHAND_pub_v2") in message
