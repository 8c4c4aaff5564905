"""Metrics on hand-computed cases."""

import fixtures_data as fx
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handfit import metrics


def test_auc_of_a_known_pck_curve():
    thresholds = np.array([0.0, 10.0, 20.0, 30.0])
    curve = np.array([0.25, 0.5, 0.75, 1.0])
    # trapezoids: 10 * (0.375 + 0.625 + 0.875) = 18.75, over a width of 30
    assert metrics.auc(curve, thresholds) == pytest.approx(0.625)
    np.testing.assert_allclose(metrics.pck_curve(np.array([0, 10, 20, 30.0]), thresholds), curve)


def test_keypoint_eval_has_hand3d_semantics():
    util = metrics.KeypointEval(num_keypoints=3)
    # keypoint 0: errors 0, 10, 20, 30; keypoint 1: 100, 100, 200 (+ a hidden 0);
    # keypoint 2: never visible, so left out of every average.
    errors = np.array([[0.0, 100, 5], [10, 100, 5], [20, 200, 5], [30, 0, 5]])
    visible = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0]], bool)
    util.feed_errors(errors[:2], visible[:2])
    util.feed_errors(errors[2:], visible[2:])  # batches accumulate
    out = util.get_measures(0.0, 30.0, 4)
    assert out["auc"] == pytest.approx((0.625 + 0.0) / 2)
    assert out["epe_mean"] == pytest.approx((15.0 + 400.0 / 3) / 2)
    assert out["epe_median"] == pytest.approx((15.0 + 100.0) / 2)
    np.testing.assert_allclose(out["pck"], [0.125, 0.25, 0.375, 0.5])
    assert util.count == 7


def _hand(seed=0):
    return fx.make_hand(np.random.default_rng(seed), 0.5).astype(np.float64)


def test_zimmermann_assumes_gt_root_and_scale():
    gt = _hand()
    pred = 1.7 * gt + np.array([0.1, -0.2, 0.3])  # right shape, wrong scale and position
    ev = metrics.PoseEval3D("zimmermann")
    ev.add(pred[None], gt[None])
    out = ev.result()
    assert out["protocol"] == "zimmermann" and out["epe_mean_mm"] == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(out["pck"][1:], 1.0)  # pck(0) may see rounding errors
    # a 10 mm shift of one fingertip is a 10 mm error on it alone
    pred = gt.copy()
    pred[8, 0] += 0.010
    aligned, _ = metrics.align(pred[None], gt[None], protocol="zimmermann")
    errors = np.linalg.norm(aligned[0] - gt, axis=-1) * 1000
    np.testing.assert_allclose(errors, np.eye(21)[8] * 10.0, atol=1e-9)


def test_mcp_protocol_roots_at_middle_mcp():
    gt = _hand()
    pred = gt.copy()
    pred[0] += np.array([0.0, 0.0, 0.02])  # moving the wrist does not move the middle MCP root
    aligned, _ = metrics.align(pred[None], gt[None], protocol="mcp")
    errors = np.linalg.norm(aligned[0] - gt, axis=-1)
    np.testing.assert_allclose(errors, np.eye(21)[0] * 0.02, atol=1e-12)
    aligned, _ = metrics.align(pred[None], gt[None], protocol="zimmermann")
    errors = np.linalg.norm(aligned[0] - gt, axis=-1)
    assert errors[0] == 0 and np.allclose(errors[1:], 0.02)  # everything else moves


def test_procrustes_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(30, 3))
    R = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    s, t = 2.5, np.array([1.0, -2.0, 0.5])
    target = s * points @ R.T + t
    s_hat, R_hat, t_hat = metrics.similarity_transform(points, target)
    assert s_hat == pytest.approx(s)
    np.testing.assert_allclose(R_hat, R, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)
    np.testing.assert_allclose(metrics.procrustes_align(points, target), target, atol=1e-10)
    # a mirror image is not reachable by a proper rotation
    _, R_m, _ = metrics.similarity_transform(points * np.array([-1, 1, 1]), target)
    assert np.linalg.det(R_m) == pytest.approx(1.0)
    # weights: outliers with weight 0 (even NaN) do not move the fit
    noisy = target.copy()
    noisy[:3] = np.nan
    w = np.ones(30)
    w[:3] = 0
    s_w, R_w, _ = metrics.similarity_transform(points, noisy, w)
    assert s_w == pytest.approx(s) and np.allclose(R_w, R)


def test_procrustes_protocol_and_units():
    gt = _hand(2)
    R = Rotation.from_rotvec([0.2, 0.1, -0.4]).as_matrix()
    pred = 0.8 * gt @ R.T + 0.05
    ev = metrics.PoseEval3D("procrustes")
    ev.add(pred[None], gt[None])
    assert ev.result()["epe_mean_mm"] == pytest.approx(0, abs=1e-6)
    ev = metrics.PoseEval3D("none")
    ev.add((gt + np.array([0, 0.003, 0.004]))[None], gt[None])
    out = ev.result()
    assert out["epe_mean_mm"] == pytest.approx(5.0) and out["protocol"] == "none"
    assert out["auc_20_50"] == pytest.approx(1.0)
    assert out["thresholds_mm"][-1] == 50.0 and len(out["thresholds_mm"]) == 20
    with pytest.raises(ValueError, match="unknown protocol"):
        metrics.PoseEval3D("zimmerman")


def test_pose_eval_3d_visibility():
    gt = _hand(3)
    pred = gt.copy()
    pred[5] += 1.0  # a 1 m error on an invisible joint does not count
    visible = np.ones(21, bool)
    visible[5] = False
    ev = metrics.PoseEval3D("root")
    ev.add(pred[None], gt[None], visible[None])
    assert ev.result()["epe_mean_mm"] == pytest.approx(0, abs=1e-9)


def test_dexter_fingertip_protocol():
    gt = np.array(
        [[0, 0, 0.5], [0.04, 0, 0.5], [0, 0.04, 0.5], [0.04, 0.04, 0.5], [0.02, 0.02, 0.55]]
    )
    pred = 3.0 * gt + np.array([0.2, 0.0, 0.1])  # centroid and mean spread differ only
    ev = metrics.DexterEval()
    ev.add(pred[None], gt[None])
    assert ev.result()["epe_mean_mm"] == pytest.approx(0, abs=1e-9)
    # missing tips are dropped from the centroid and the errors; one tip left: skipped frame
    gt_missing = gt.copy()
    gt_missing[[1, 2]] = np.nan
    pred2 = pred.copy()
    pred2[1] += 5.0  # whatever a dropped tip's prediction is, it changes nothing
    ev.add(pred2[None], gt_missing[None])
    gt_one = np.full_like(gt, np.nan)
    gt_one[0] = gt[0]
    ev.add(pred[None], gt_one[None])
    out = ev.result()
    assert out["epe_mean_mm"] == pytest.approx(0, abs=1e-9)
    assert out["skipped_frames"] == 1 and out["missing_tips"] == 6
    assert out["protocol"] == "dexter_object_tips" and out["auc_range"] == (20.0, 50.0, 20)
    # hand-computed: gt tips at +-1 on x, prediction at +-1 and 0 on y for one tip
    gt2 = np.array([[-1.0, 0, 0], [1, 0, 0]]) * 0.01
    pred_aligned = metrics.dexter_align(np.array([[-2.0, 0, 0], [2, 0, 0]]) * 0.01, gt2)
    np.testing.assert_allclose(pred_aligned, gt2, atol=1e-12)


def test_dexter_accepts_canonical_joints():
    gt = np.full((21, 3), np.nan)
    tips = list(fx.DO_TIPS)
    gt[tips] = np.array(
        [[0, 0, 0.5], [0.04, 0, 0.5], [0, 0.04, 0.5], [0.04, 0.04, 0.5], [0.02, 0.02, 0.55]]
    )
    pred = np.zeros((21, 3))
    pred[tips] = gt[tips]
    pred[tips[0]] += np.array([0.0, 0.0, 0.01])
    ev = metrics.DexterEval()
    ev.add(pred[None], gt[None])
    assert ev.result()["epe_mean_mm"] > 1.0
    assert ev.missing_tips == 0


def test_f_score_on_a_tiny_point_set():
    pred = np.array([[0.0, 0, 0]])
    gt = np.array([[0.0, 0, 0], [5.0, 0, 0]])
    f, p, r = metrics.f_score(pred, gt, 1.0)
    assert (p, r) == (1.0, 0.5) and f == pytest.approx(2 / 3)
    f, p, r = metrics.f_score(np.array([[0.0, 0, 0], [0, 0, 9]]), gt, 1.0)
    assert (p, r, f) == (0.5, 0.5, 0.5)
    assert metrics.f_score(np.array([[9.0, 9, 9]]), gt, 1.0) == (0.0, 0.0, 0.0)


def test_freihand_eval():
    rng = np.random.default_rng(4)
    gt_j = _hand(5)
    gt_v = gt_j[rng.integers(0, 21, 100)] + rng.normal(0, 0.01, (100, 3))
    R = Rotation.from_rotvec([0.5, 0.2, 0.1]).as_matrix()
    ev = metrics.FreiHANDEval()
    ev.add((1.3 * gt_j @ R.T)[None], gt_j[None], (1.3 * gt_v @ R.T)[None], gt_v[None])
    out = ev.result()
    assert out["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-6)
    assert out["pa_mpvpe_mm"] == pytest.approx(0, abs=1e-6)
    assert out["f@5mm"] == 1.0 and out["f@15mm"] == 1.0
    assert out["protocol"] == "freihand_procrustes" and len(out["thresholds_mm"]) == 100
    # every vertex 10 mm off in alternating directions: PA can't fix it
    ev = metrics.FreiHANDEval()
    shift = np.zeros_like(gt_v)
    shift[::2, 2], shift[1::2, 2] = 0.01, -0.01
    shifted_j = gt_j + np.where(np.arange(21)[:, None] % 2 == 0, 1.0, -1.0) * [0, 0, 0.01]
    ev.add(shifted_j[None], gt_j[None], (gt_v + shift)[None], gt_v[None])
    out = ev.result()
    assert 8.0 < out["pa_mpjpe_mm"] <= 10.0 + 1e-9
    assert 8.0 < out["pa_mpvpe_mm"] <= 10.0 + 1e-9


def test_pck_2d_in_pixels():
    gt = np.zeros((2, 21, 2))
    pred = gt.copy()
    pred[0, :, 0] = 3.0  # 3 px everywhere in the first image
    pred[1, :, 1] = 40.0  # 40 px in the second: beyond the 30 px range
    ev = metrics.PoseEval2D()
    ev.add(pred, gt)
    out = ev.result()
    assert out["protocol"] == "2d" and out["unit"] == "px"
    assert out["epe_mean_px"] == pytest.approx(21.5)
    np.testing.assert_allclose(out["pck"], np.where(np.linspace(0, 30, 20) >= 3, 0.5, 0.0))


def test_segmentation_metrics():
    gt = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros((2, 4, 4), np.float32)
    gt[0, :2, :2] = 1  # 4 pixels
    pred[0, :2, :3] = 0.9  # 6 pixels, 4 of them right: tp 4, fp 2, fn 0
    # image 1: both empty, a perfect answer
    ev = metrics.SegmentationEval()
    ev.add(pred, gt)
    out = ev.result()
    assert out["iou"] == pytest.approx((4 / 6 + 1) / 2)
    assert out["precision"] == pytest.approx((4 / 6 + 1) / 2)
    assert out["recall"] == pytest.approx(1.0)
    assert out["f1"] == pytest.approx((0.8 + 1) / 2)
    assert out["total_iou"] == pytest.approx(4 / 6) and out["total_f1"] == pytest.approx(0.8)
    assert "protocol" in out
    np.testing.assert_array_equal(metrics.segmentation_counts(pred, gt), [[4, 2, 0], [0, 0, 0]])
