"""The input pipeline: crops keep joints, K, image and mask consistent; batches are fixed."""

import numpy as np
import pytest

from handfit.data import pipeline

K = np.array([[480.0, 0.0, 150.0], [0.0, 470.0, 130.0], [0.0, 0.0, 1.0]], np.float32)
H, W = 256, 320
MARKED = 8  # the joint drawn as a marker in the image and the mask


def make_record(seed=0, side=1):
    """A record as the TFDS builders give it, with a 5x5 marker at joint MARKED."""
    rng = np.random.default_rng(seed)
    joints3d = np.array([0.02, 0.01, 0.5]) + rng.normal(0, 0.03, (21, 3))
    # put the marked joint exactly on the centre of pixel (r, c)
    c, r = 100 + seed, 90 + 2 * seed
    z = joints3d[MARKED, 2]
    joints3d[MARKED, :2] = [(c + 0.5 - K[0, 2]) * z / K[0, 0], (r + 0.5 - K[1, 2]) * z / K[1, 1]]
    joints3d = joints3d.astype(np.float32)
    proj = joints3d.astype(np.float64) @ K.T
    uv = (proj[:, :2] / proj[:, 2:]).astype(np.float32)
    image = np.full((H, W, 3), 40, np.uint8)
    mask = np.zeros((H, W, 1), np.uint8)
    image[r - 2 : r + 3, c - 2 : c + 3] = 255
    mask[r - 2 : r + 3, c - 2 : c + 3] = 1
    visible = np.ones(21, bool)
    visible[3] = False
    return dict(
        image=image,
        mask=mask,
        K=K,
        joints3d=joints3d,
        joints2d=uv,
        visible=visible,
        side=side,
        sample_id=f"test/{seed}",
    )


def marker_centre(image2d):
    rows, cols = np.nonzero(image2d > 0.5)
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5])


AUGMENT = dict(scale_jitter=0.2, translate_jitter=0.1, rotation_deg=40.0, color_jitter=0.0)


@pytest.mark.parametrize("side", [1, 0])
@pytest.mark.parametrize("augment", [False, True])
def test_crop_keeps_k_joints_image_and_mask_consistent(side, augment):
    record = make_record(1, side)
    rng = np.random.default_rng(3) if augment else None
    out = pipeline.process(record, rng, image_size=128, heatmap_size=16, **AUGMENT)
    # the crop's K projects the new 3D joints onto the new 2D joints
    proj = out["joints3d"] @ out["K"].T.astype(np.float64)
    uv = proj[:, :2] / proj[:, 2:]
    np.testing.assert_allclose(uv[out["visible"]], out["joints2d"][out["visible"]], atol=1e-3)
    # the marker drawn at joint MARKED lands on that joint, in the image and in the mask
    np.testing.assert_allclose(
        marker_centre(out["image"].max(-1)), out["joints2d"][MARKED], atol=0.25
    )
    np.testing.assert_allclose(marker_centre(out["mask"]), out["joints2d"][MARKED], atol=0.25)
    # 3D joints move rigidly (rotation about the optical axis, or a mirror)
    d_in = np.linalg.norm(record["joints3d"][:, None] - record["joints3d"][None], axis=-1)
    d_out = np.linalg.norm(out["joints3d"][:, None] - out["joints3d"][None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-6)
    assert bool(out["mirrored"]) == (side == 0)
    assert not out["visible"][3] and np.all(out["joints2d"][3] == 0)


@pytest.mark.parametrize(
    "side, left", [(np.int64(0), True), (np.int64(1), False), ("left", True), (b"right", False)]
)
def test_side_is_the_builders_class_index_or_its_name(side, left):
    """TFDS gives the ClassLabel's index (numpy int64); plain dicts may name the side."""
    out = pipeline.process(make_record(2, side=side), None, image_size=64, heatmap_size=8)
    assert bool(out["mirrored"]) == left


@pytest.mark.parametrize("side", [2, "Left", 0.5])
def test_an_unknown_side_is_named(side):
    record = make_record(2) | {"side": side, "sample_id": "rhd/7"}
    with pytest.raises(ValueError, match=r"rhd/7: side=.*expected one of \('left', 'right'\)"):
        pipeline.process(record, None, image_size=64, heatmap_size=8)


def test_mirror_flips_x_and_keeps_depth():
    record = make_record(2, side=0)
    out = pipeline.process(record, None, image_size=64, heatmap_size=8)
    np.testing.assert_allclose(out["joints3d"], record["joints3d"] * [-1, 1, 1], atol=1e-6)


def test_crop_keeps_the_joints_inside_and_sizes_the_box():
    record = make_record(4)
    out = pipeline.process(record, None, image_size=224, heatmap_size=32)
    inside = out["joints2d"][out["visible"]]
    # side 1.5 x the tight box: joints fill the middle two thirds
    assert inside.min() >= 224 / 6 - 1e-3 and inside.max() <= 224 * 5 / 6 + 1e-3
    assert float(out["norm_size"]) == pytest.approx(224.0, rel=1e-5)
    assert out["image"].shape == (224, 224, 3) and out["image"].dtype == np.float32
    assert out["heatmaps"].shape == (21, 32, 32)


def test_heatmap_argmax_recovers_the_joints_within_a_cell():
    record = make_record(5)
    out = pipeline.process(record, None, image_size=224, heatmap_size=32)
    maps = out["heatmaps"]
    cell = 224 / 32
    for j in np.flatnonzero(out["visible"]):
        r, c = np.unravel_index(np.argmax(maps[j]), maps[j].shape)
        np.testing.assert_allclose(
            [(c + 0.5) * cell, (r + 0.5) * cell], out["joints2d"][j], atol=cell / 2 + 1e-4
        )
    assert np.all(maps[3] == 0), "an invisible joint has an empty heat map"
    assert maps.max() <= 1.0


def test_warp_is_scipys_bilinear_resampling_with_zero_outside():
    """The reference: scipy.ndimage.map_coordinates(order=1, mode='constant') per channel,
    at the source positions H^-1 (u + 0.5) - 0.5; crops reaching outside the image
    included, a perspective homography and a 1-pixel-wide source too."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for image in (rng.random((40, 30, 4)), rng.random((40, 30)), rng.random((5, 1, 3))):
        for _ in range(5):
            a, s = rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 2.5)
            homography = np.array(
                [
                    [s * np.cos(a), -s * np.sin(a), rng.uniform(-30, 50)],
                    [s * np.sin(a), s * np.cos(a), rng.uniform(-30, 50)],
                    [rng.uniform(-2e-3, 2e-3), rng.uniform(-2e-3, 2e-3), 1.0],
                ]
            )
            centres = np.arange(24) + 0.5
            uu, vv = np.meshgrid(centres, centres)
            pts = np.linalg.inv(homography) @ np.stack([uu.ravel(), vv.ravel(), np.ones(576)])
            coords = np.stack([pts[1] / pts[2] - 0.5, pts[0] / pts[2] - 0.5])
            img = image[..., None] if image.ndim == 2 else image
            want = np.stack(
                [
                    ndimage.map_coordinates(img[..., c], coords, order=1, mode="constant")
                    for c in range(img.shape[-1])
                ],
                -1,
            ).reshape(24, 24, -1)
            got = pipeline.warp(image.astype(np.float32), homography, 24)
            assert got.shape == (want[..., 0] if image.ndim == 2 else want).shape
            np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)


def test_heatmaps_are_the_sampled_gaussian_and_empty_for_unknown_joints():
    joints = np.array([[10.3, 20.7], [np.nan, 3.0], [40.0, 5.0]])
    visible = np.array([True, True, False])
    maps = pipeline.heatmaps(joints, visible, image_size=64, heatmap_size=16, sigma=1.5)
    centres = (np.arange(16) + 0.5) * 4.0  # crop pixels of the cells' centres
    du, dv = np.meshgrid(centres - 10.3, centres - 20.7)
    np.testing.assert_allclose(maps[0], np.exp(-(du**2 + dv**2) / (2 * (1.5 * 4) ** 2)), atol=1e-6)
    assert np.all(maps[1:] == 0) and np.isfinite(maps).all()


def test_no_labelled_joint_is_a_clear_error():
    record = make_record(6)
    record["joints3d"] = np.full((21, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match="test/6: no labelled 2D joint"):
        pipeline.process(record, None)


class ListSource:
    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def test_batches_are_fixed_shape_deterministic_and_sharded():
    source = ListSource([make_record(i) for i in range(6)])
    kwargs = dict(batch_size=2, image_size=32, heatmap_size=8, **AUGMENT)

    def first_batches(seed, n=3, **kw):
        it = iter(pipeline.dataset(source, train=True, seed=seed, **kwargs, **kw))
        return [next(it) for _ in range(n)]

    a, b, c = first_batches(0), first_batches(0), first_batches(1)
    assert a[0]["image"].shape == (2, 32, 32, 3) and a[0]["joints3d"].shape == (2, 21, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
    assert not all(np.array_equal(x["joints3d"], y["joints3d"]) for x, y in zip(a, c))
    # evaluation: in order, every example once, last partial batch kept
    evals = list(pipeline.dataset(source, batch_size=4, train=False, image_size=32, heatmap_size=8))
    assert [len(e["image"]) for e in evals] == [4, 2]
    first = pipeline.process(source[0], None, image_size=32, heatmap_size=8)
    np.testing.assert_array_equal(evals[0]["joints3d"][0], first["joints3d"])
    # shards are disjoint and cover the source
    ids = []
    for shard in range(2):
        for batch in pipeline.dataset(
            source,
            batch_size=1,
            train=False,
            shard_index=shard,
            shard_count=2,
            image_size=16,
            heatmap_size=4,
        ):
            ids.append(tuple(np.round(batch["joints3d"][0, 0], 6)))
    assert len(set(ids)) == 6
