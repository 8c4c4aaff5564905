"""Metrics on hand-computed cases."""

import fixtures_data as fx
import numpy as np
import pytest
import reference_scorers as ref
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


def test_rotation_error_is_the_angle_the_hand_is_turned():
    """Known turns of a hand (any scale and position) are measured back; too few joints or a
    non-finite prediction are counted as unscored."""
    gt = np.stack([_hand(seed) for seed in range(6)])
    turns = [0.0, 30.0, 60.0, 120.0, 179.0, 90.0]
    axes = np.random.default_rng(2).normal(size=(6, 3))
    pred = np.empty_like(gt)
    for i, (angle, axis) in enumerate(zip(turns, axes, strict=True)):
        R = Rotation.from_rotvec(np.radians(angle) * axis / np.linalg.norm(axis)).as_matrix()
        pred[i] = 1.7 * gt[i] @ R + np.array([0.1, -0.2, 0.5])  # R.T maps pred back onto gt
    weights = np.ones((6, 21))
    weights[5, 2:] = 0  # two joints only: no angle
    ev = metrics.RotationError()
    ev.add(pred[:5], gt[:5], weights[:5])
    ev.add(pred[5:], gt[5:], weights[5:])
    broken = pred[:1].copy()
    broken[0, 0] = np.nan
    ev.add(broken, gt[:1], np.ones((1, 21)))
    np.testing.assert_allclose(ev.angles, turns[:5], atol=1e-6)
    r = ev.result()
    assert r["examples"] == 5 and r["unscored"] == 2
    assert r["median_deg"] == pytest.approx(60.0) and r["mean_deg"] == pytest.approx(77.8)
    assert r["over_45"] == pytest.approx(0.6) and r["over_90"] == pytest.approx(0.4)
    empty = metrics.RotationError().result()
    assert empty["examples"] == 0 and np.isnan(empty["median_deg"])


def test_rotation_splits_into_its_turn_in_the_image_and_in_depth():
    """R = S T, T about the viewing axis z by a, S about an axis in the image plane by b:
    the two angles come back, in either order and for R or its inverse."""
    rng = np.random.default_rng(3)
    for a, b in [(0.0, 0.0), (30.0, 0.0), (0.0, 50.0), (120.0, 40.0), (170.0, 100.0)]:
        phi = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.cos(phi), np.sin(phi), 0.0])
        T = Rotation.from_rotvec(np.radians(a) * np.array([0.0, 0.0, 1.0]))
        S = Rotation.from_rotvec(np.radians(b) * axis)
        for R in ((S * T).as_matrix(), (T * S).as_matrix(), (S * T).inv().as_matrix()):
            in_plane, out_of_plane = metrics.image_plane_angles_deg(R)
            assert in_plane == pytest.approx(a, abs=1e-6)
            assert out_of_plane == pytest.approx(b, abs=1e-6)
    gt = _hand(4)[None]
    R = (
        Rotation.from_rotvec([0.0, 0.0, np.radians(20)])
        * Rotation.from_rotvec(np.radians(60) * np.array([1.0, 0.0, 0.0]))
    ).as_matrix()
    ev = metrics.RotationError()
    ev.add(gt @ R, gt, np.ones((1, 21)))
    r = ev.result()
    assert r["in_plane_median_deg"] == pytest.approx(20.0, abs=1e-6)
    assert r["out_of_plane_median_deg"] == pytest.approx(60.0, abs=1e-6)
    assert r["median_deg"] > 60.0


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
    assert out["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-4)  # eval.py adds 1e-8 to the norms
    assert out["pa_mpvpe_mm"] == pytest.approx(0, abs=1e-4)
    assert out["pa_f@5mm"] == 1.0 and out["pa_f@15mm"] == 1.0
    assert out["f@5mm"] < 1.0 and out["mpjpe_mm"] > 10.0  # unaligned: scaled and rotated
    assert out["protocol"] == "freihand" and len(out["thresholds_mm"]) == 100
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


# ----------------------------------------------------------------------------- official scorers


def _noisy_predictions(n, nan_hands=(), seed=0):
    """``n`` hands and predictions of them (scaled, shifted, noisy), some all NaN."""
    rng = np.random.default_rng(seed)
    gt = np.stack([_hand(seed + i) for i in range(n)])
    pred = 1.3 * gt + rng.normal(0, 0.012, gt.shape) + np.array([0.02, -0.01, 0.1])
    pred[list(nan_hands)] = np.nan
    return gt, pred


def test_nan_predictions_are_misses_as_in_hand3d_evalutil():
    """Same PCK/AUC as hand3d's EvalUtil (utils/general.py) after eval3d.py's normalisation.

    With 2 of 40 hands (5 %) predicted as NaN, dropping them (handfit before) gives a higher
    AUC 20-50 than hand3d, which keeps their NaN errors as misses.
    """
    gt, pred = _noisy_predictions(40, nan_hands=(3, 17))
    ours = metrics.PoseEval3D("zimmermann", 0.0, 50.0, 20)
    ours.add(pred, gt)
    out = ours.result()
    official, official_20_50, dropped = ref.EvalUtil(), ref.EvalUtil(), ref.EvalUtil()
    for g, p in zip(gt * 1000, pred * 1000):
        ref.hand3d_eval3d_feed(official, g, p)
        if np.isfinite(p).all():
            ref.hand3d_eval3d_feed(dropped, g, p)
    mean, _, auc, pck, _ = official.get_measures(0.0, 50.0, 20)
    official_20_50 = official.get_measures(20.0, 50.0, 20)[2]
    assert out["auc"] == pytest.approx(auc, abs=1e-12)
    np.testing.assert_allclose(out["pck"], pck, atol=1e-12)
    assert out["auc_20_50"] == pytest.approx(official_20_50, abs=1e-12)
    assert dropped.get_measures(20.0, 50.0, 20)[2] > official_20_50 + 0.02
    assert out["nonfinite_predictions"] == 2 * 21
    assert np.isnan(mean) and out["epe_mean_mm"] == np.inf  # hand3d: NaN; handfit: infinite
    ev2d = metrics.PoseEval2D()
    ev2d.add(pred[..., :2] * 1000, gt[..., :2] * 1000)
    assert ev2d.result()["nonfinite_predictions"] == 42


def test_missing_ground_truth_root_or_scale_joint_is_an_error():
    gt, pred = _noisy_predictions(3)
    labelled = np.ones((3, 21), bool)
    zero_filled = gt.copy()
    zero_filled[1, 0] = 0.0  # the input pipeline zero-fills unlabelled joints
    labelled[1, 0] = False
    ev = metrics.PoseEval3D("zimmermann", dataset="rhd")
    names = ["evaluation/00003", "evaluation/00007", "x"]
    with pytest.raises(ValueError, match=r"rhd: example evaluation/00007: ground-truth joint 0 "):
        ev.add(pred, zero_filled, labelled, names, labelled)
    ev.add(pred, gt, labelled, names)  # an occluded (not visible) but labelled root is fine
    nan_bone = gt.copy()
    nan_bone[2, 10] = np.nan
    with pytest.raises(ValueError, match=r"example 2: ground-truth joint 10 \(middle_pip\) is not"):
        metrics.align(pred, nan_bone, protocol="mcp")
    metrics.align(pred, nan_bone, protocol="root")  # needs the root only
    with pytest.raises(ValueError, match=r"ground-truth joint 9 \(middle_mcp\) is unlabelled"):
        metrics.align(pred, gt, protocol="zimmermann", labelled=np.arange(21) != 9)


def test_freihand_eval_matches_the_official_eval_py():
    """Every score of FreiHAND's eval.py (re-typed in reference_scorers), same inputs.

    One prediction is a mirror image: eval.py's alignment may reflect, so it aligns
    perfectly there; the proper-rotation variant cannot.
    """
    rng = np.random.default_rng(7)
    gt_j, pred_j = _noisy_predictions(5, seed=3)
    gt_v = gt_j[:, rng.integers(0, 21, 60)] + rng.normal(0, 0.01, (5, 60, 3))
    pred_v = 1.3 * gt_v + rng.normal(0, 0.004, gt_v.shape) + 0.05
    mirror = np.array([-1.0, 1.0, 1.0])
    pred_j[0], pred_v[0] = gt_j[0] * mirror, gt_v[0] * mirror
    ours = metrics.FreiHANDEval()
    ours.add(pred_j, gt_j, pred_v, gt_v)
    out = ours.result()
    official = ref.freihand_scores(gt_j, gt_v, pred_j, pred_v)
    pairs = {
        "mpjpe_mm": "xyz_mean3d",
        "pa_mpjpe_mm": "xyz_al_mean3d",
        "mpvpe_mm": "mesh_mean3d",
        "pa_mpvpe_mm": "mesh_al_mean3d",
    }
    for key, name in pairs.items():
        assert out[key] == pytest.approx(1000 * official[name], rel=1e-9), key
    for key, name in {
        "mpjpe_auc": "xyz_auc3d",
        "pa_mpjpe_auc": "xyz_al_auc3d",
        "mpvpe_auc": "mesh_auc3d",
        "pa_mpvpe_auc": "mesh_al_auc3d",
        "f@5mm": "f_score_5",
        "f@15mm": "f_score_15",
        "pa_f@5mm": "f_al_score_5",
        "pa_f@15mm": "f_al_score_15",
    }.items():
        assert out[key] == pytest.approx(official[name], abs=1e-12), key
    proper = metrics.FreiHANDEval("proper")
    proper.add(pred_j[:1], gt_j[:1])
    assert out["protocol"] == "freihand" and proper.result()["protocol"] == "freihand_proper"
    assert proper.result()["pa_mpjpe_mm"] > 5.0  # no proper rotation undoes a mirror image


def test_freihand_eval_of_a_mesh_that_is_not_mano_as_eval_py():
    """Fewer predicted vertices than the truth: eval.py moves them by the joints' transform."""
    rng = np.random.default_rng(8)
    gt_j, pred_j = _noisy_predictions(3, seed=5)
    gt_v = gt_j[:, rng.integers(0, 21, 40)] + rng.normal(0, 0.01, (3, 40, 3))
    pred_v = 1.3 * gt_v[:, :35] + rng.normal(0, 0.003, (3, 35, 3))
    ours = metrics.FreiHANDEval()
    ours.add(pred_j, gt_j, pred_v, gt_v)
    out = ours.result()
    official = ref.freihand_scores(gt_j, gt_v, pred_j, pred_v)
    assert "mpvpe_mm" not in out and "35 vertices, true ones 40" in out["mesh_errors"]
    for t in (5, 15):
        assert out[f"f@{t}mm"] == pytest.approx(official[f"f_score_{t}"], abs=1e-12)
        assert out[f"pa_f@{t}mm"] == pytest.approx(official[f"f_al_score_{t}"], abs=1e-12)


def test_pck_2d_in_image_pixels_matches_hand3d_eval2d():
    """hand3d's eval2d.py scores the dataset image's pixels; crops are scaled windows of it."""
    rng = np.random.default_rng(9)
    gt_img = rng.uniform(50, 250, (6, 21, 2))
    pred_img = gt_img + rng.normal(0, 8.0, gt_img.shape)
    visible = rng.random((6, 21)) > 0.1
    crop_scale = rng.uniform(0.5, 2.5, 6)  # crop pixels per image pixel
    centre = rng.uniform(100, 200, (6, 1, 2))
    to_crop = lambda p: (p - centre) * crop_scale[:, None, None] + 112.0  # noqa: E731
    ours = metrics.PoseEval2D(frame="image")
    ours.add(to_crop(pred_img), to_crop(gt_img), visible, 1.0 / crop_scale)
    official = ref.EvalUtil()
    for g, v, p in zip(gt_img, visible, pred_img):
        official.feed(g, v, p)
    mean, median, auc, _, _ = official.get_measures(0.0, 30.0, 20)
    out = ours.result()
    assert out["frame"] == "image"
    assert out["auc"] == pytest.approx(auc, abs=1e-12)
    assert out["epe_mean_px"] == pytest.approx(mean, rel=1e-12)
    assert out["epe_median_px"] == pytest.approx(median, rel=1e-12)
    in_crop = metrics.PoseEval2D()
    in_crop.add(to_crop(pred_img), to_crop(gt_img), visible)
    assert abs(in_crop.result()["auc"] - auc) > 0.05  # why both are reported, labelled
