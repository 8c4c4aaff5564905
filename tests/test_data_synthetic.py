"""The synthetic dataset: consistent labels, deterministic, prepared through TFDS."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from handfit import mano
from handfit.data import builders, pipeline, synthetic

SPEC = synthetic.SyntheticSpec(num_train=6, num_test=3, image_size=64, occluder_prob=0.0)


@pytest.fixture(scope="module")
def records():
    return synthetic.generate(SPEC, "train", 0, 6)


def test_labels_agree_with_the_image(records):
    K = synthetic.intrinsics(SPEC)
    for r in records:
        proj = r["joints3d"].astype(np.float64) @ K.T
        np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], r["joints2d"], atol=1e-3)
        mask = r["mask"][..., 0] > 0
        # joints lie inside the hand: their pixels are in the (slightly dilated) silhouette
        grown = ndimage.binary_dilation(mask, iterations=1)
        cols, rows = r["joints2d"][:, 0].astype(int), r["joints2d"][:, 1].astype(int)
        assert grown[rows, cols].all(), r["sample_id"]
        assert 0.05 < mask.mean() < 0.7, "the hand must fill a good part of the image"
        # skin under the mask: red above blue on average
        skin = r["image"][mask].astype(float)
        assert skin[:, 0].mean() > skin[:, 2].mean()
        assert r["visible"].sum() >= 5


def test_parameters_reproduce_the_mesh(records):
    model = mano.open_hand()
    for r in records[:3]:
        out = mano.forward(
            model,
            jnp.asarray(r["mano_pose"][None, 3:]),
            jnp.asarray(r["mano_shape"][None]),
            jnp.asarray(r["mano_pose"][None, :3]),
        )
        v = np.asarray(out.vertices[0])
        np.testing.assert_allclose(v - v.mean(0), r["vertices"] - r["vertices"].mean(0), atol=2e-5)


def test_deterministic_and_independent_of_chunking(records):
    again = synthetic.generate(SPEC, "train", 2, 3)
    for a, b in zip(records[2:5], again):
        assert a["sample_id"] == b["sample_id"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_allclose(a["joints3d"], b["joints3d"], atol=1e-6)
    test = synthetic.generate(SPEC, "test", 0, 1)[0]
    assert not np.allclose(test["joints3d"], records[0]["joints3d"])


def test_occluders_hide_joints_and_mask():
    spec = synthetic.SyntheticSpec(image_size=64, occluder_prob=1.0)
    clean = synthetic.SyntheticSpec(image_size=64, occluder_prob=0.0)
    occluded, plain = (
        synthetic.generate(spec, "train", 0, 4),
        synthetic.generate(clean, "train", 0, 4),
    )
    assert sum(o["mask"].sum() for o in occluded) < sum(p["mask"].sum() for p in plain)
    assert all((o["visible"] <= p["visible"]).all() for o, p in zip(occluded, plain))


def test_prepared_through_tfds_and_the_pipeline(tmp_path):
    prepared = builders.prepare("synthetic", tmp_path, spec=SPEC)
    assert prepared.is_prepared()
    source = builders.data_source("synthetic", "test", tmp_path, spec=SPEC)
    assert len(source) == 3
    want = synthetic.generate(SPEC, "test", 0, 3)
    for i in range(3):
        np.testing.assert_array_equal(source[i]["image"], want[i]["image"])
        np.testing.assert_array_equal(source[i]["mask"], want[i]["mask"])
        np.testing.assert_allclose(source[i]["joints3d"], want[i]["joints3d"])
    batch = next(
        iter(pipeline.dataset(source, batch_size=2, train=False, image_size=32, heatmap_size=8))
    )
    assert batch["image"].shape == (2, 32, 32, 3) and batch["has_mask"].all()
    with pytest.raises(FileNotFoundError, match="--mode=prepare"):
        builders.data_source("synthetic", "test", tmp_path / "nothing", spec=SPEC)


def test_the_test_split_can_be_drawn_wider():
    spec = synthetic.SyntheticSpec(
        image_size=32,
        occluder_prob=0.0,
        shape_std=0.1,
        test_shape_std=3.0,
        rotation_deg=(5.0, 5.0, 5.0),
        test_rotation_deg=(90.0, 90.0, 90.0),
    )
    train = np.stack([r["mano_shape"] for r in synthetic.generate(spec, "train", 0, 8)])
    test = np.stack([r["mano_shape"] for r in synthetic.generate(spec, "test", 0, 8)])
    assert train.std() < 0.3 < 1.5 < test.std()
