"""Evaluation metrics: PCK/AUC/EPE under named protocols, Procrustes errors, F-scores, masks.

Conventions (docs/datasets.md, "Scoring protocols"): keypoints come in metres (3D) or pixels (2D);
reported errors are in millimetres (3D) or pixels (2D). Every result dict names
the protocol it was computed under (``'protocol'``), so a number is never shown
without it.

PCK/AUC/EPE follow hand3d's ``EvalUtil`` (utils/general.py): per-keypoint Euclidean
errors of visible keypoints only; ``PCK(t) = mean(d <= t)`` over ``thresholds =
linspace(min, max, steps)``; per-keypoint ``AUC = trapz(pck, t) / trapz(1, t)``
averaged over the keypoints that have any data; "EPE mean" = mean over keypoints
of each keypoint's mean error, "EPE median" = mean over keypoints of each
keypoint's median error. A visible keypoint whose prediction is NaN or inf is a
miss: its error is infinite (hand3d stores NaN, which no threshold counts either),
and results count such keypoints (``nonfinite_predictions``). A visible keypoint
whose ground truth is not finite is an error.

3D alignment protocols (:data:`PROTOCOLS`), applied per hand before the errors:

* ``'zimmermann'`` (default; Zimmermann & Brox, hand3d's eval3d.py): both hands made
  relative to joint 0 (the root as the dataset defines it: STB's palm centre; RHD's
  wrist, or hand3d's palm with ``RHD(root='palm')``); the prediction is scaled so its
  reference bone (middle MCP-PIP) equals the ground truth's, then placed at the
  ground-truth root. Ground-truth root and scale are assumed: a hand whose
  ground-truth root or reference-bone joints are unlabelled or not finite is an error
  naming the dataset, the example and the joint. The root joint is scored (its error
  is 0), as in hand3d.
* ``'mcp'``: the same with the middle MCP (joint 9) as root.
* ``'procrustes'``: similarity (proper rotation, translation, uniform scale) alignment
  of the prediction to the ground truth over the visible joints; a hand with a
  non-finite prediction there cannot be aligned and misses on every joint.
* ``'root'``: root-relative at joint 0 without rescaling (metric-scale predictions).
* ``'none'``: no alignment (absolute camera-frame errors).

FreiHAND (:class:`FreiHANDEval`) is scored as its official ``eval.py`` does
(lmb-freiburg/freihand): each sample aligned by ``align_w_scale`` (orthogonal
Procrustes, reflections allowed) or, with ``alignment='proper'``, by the proper-rotation
similarity above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from handfit import skeleton

PROTOCOLS = ("zimmermann", "mcp", "procrustes", "root", "none")


# ----------------------------------------------------------------------------- alignment


def similarity_transform(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *, scale: bool = True
):
    """The similarity ``x -> s R x + t`` that best maps ``source`` onto ``target`` (Umeyama).

    Args:
      source, target: ``[N, D]`` corresponding points.
      weights: ``[N]`` non-negative weights (e.g. visibility), default all 1.
      scale: fit the scale (False: rigid, s = 1).
    Returns:
      ``(s, R, t)``: scalar, ``[D, D]`` proper rotation (det +1), ``[D]``.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    if w.sum() <= 0:
        raise ValueError("similarity_transform: no points with positive weight")
    w = w / w.sum()
    source = np.where(w[:, None] > 0, source, 0.0)  # points without weight may be NaN
    target = np.where(w[:, None] > 0, target, 0.0)
    mu_s, mu_t = w @ source, w @ target
    xs, xt = source - mu_s, target - mu_t
    cov = (xt * w[:, None]).T @ xs  # [D, D]
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(len(sigma))
    d[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    R = (u * d) @ vt
    var_s = (w * (xs**2).sum(-1)).sum()
    s = float((sigma * d).sum() / var_s) if scale and var_s > 0 else 1.0
    t = mu_t - s * R @ mu_s
    return s, R, t


def procrustes_align(
    pred: np.ndarray, gt: np.ndarray, weights: np.ndarray | None = None, *, scale: bool = True
) -> np.ndarray:
    """``pred`` ``[..., N, D]`` similarity-aligned to ``gt`` ``[..., N, D]`` (per leading index).

    ``weights`` ``[..., N]`` restricts the fit (e.g. to visible joints); every point
    of ``pred`` is transformed. A sample whose prediction is not finite at a weighted
    point has no alignment: its output is all NaN.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    lead = pred.shape[:-2]
    flat_p = pred.reshape((-1,) + pred.shape[-2:])
    flat_g = gt.reshape((-1,) + gt.shape[-2:])
    flat_w = (
        np.ones(flat_p.shape[:2])
        if weights is None
        else np.asarray(weights, np.float64).reshape(-1, pred.shape[-2])
    )
    out = np.full_like(flat_p, np.nan)
    for i in range(len(flat_p)):
        if not np.isfinite(flat_p[i][flat_w[i] > 0]).all():
            continue
        s, R, t = similarity_transform(flat_p[i], flat_g[i], flat_w[i], scale=scale)
        out[i] = s * flat_p[i] @ R.T + t
    return out.reshape(lead + pred.shape[-2:])


def _check_reference_joints(
    gt: np.ndarray,
    labelled: np.ndarray | None,
    joints: Sequence[int],
    protocol: str,
    dataset: str,
    examples: Sequence | None,
) -> None:
    """Raises ValueError naming the dataset, example and joint if a needed gt joint is missing.

    ``gt`` ``[B, J, 3]``; a joint is missing when not finite or not ``labelled`` ``[B, J]``.
    """
    ok = np.isfinite(gt[:, joints]).all(-1)
    if labelled is not None:
        ok &= np.asarray(labelled, bool)[:, joints]
    if ok.all():
        return
    b, j = np.argwhere(~ok)[0]
    example = f"example {b}" if examples is None else f"example {examples[b]}"
    joint = joints[j]
    state = "not finite" if not np.isfinite(gt[b, joint]).all() else "unlabelled"
    raise ValueError(
        f"{dataset or 'dataset'}: {example}: ground-truth joint {joint} "
        f"({skeleton.JOINT_NAMES[joint]}) is {state}; protocol {protocol!r} takes the "
        "ground-truth root and reference bone (middle MCP-PIP) of every hand, so each must be "
        "labelled (or choose protocol 'procrustes', 'root' or 'none')"
    )


def align(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    protocol: str = "zimmermann",
    *,
    labelled: np.ndarray | None = None,
    dataset: str = "",
    examples: Sequence | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Aligns ``pred`` to ``gt`` (both ``[B, 21, 3]``) under a named protocol.

    Returns ``(pred_aligned, gt_used)``, both ``[B, 21, 3]``, whose per-joint
    distances are the protocol's errors. ``visible`` ``[B, 21]``: the joints Procrustes
    fits. ``labelled`` ``[B, 21]``: joints that have 3D ground truth (default: the finite
    ones; pass it where unlabelled joints were zero-filled); the protocols that take the
    ground-truth root and reference bone need those labelled. ``dataset`` and
    ``examples`` (``[B]`` names) only name a hand in errors.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.shape[-1] != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [B, J, 3]")
    if protocol == "none":
        return pred, gt
    if protocol == "procrustes":
        vis = np.ones(pred.shape[:-1]) if visible is None else np.asarray(visible, np.float64)
        return procrustes_align(pred, gt, vis), gt
    root = skeleton.MIDDLE_MCP if protocol == "mcp" else 0
    needed = [root] + ([*skeleton.REFERENCE_BONE] if protocol in ("zimmermann", "mcp") else [])
    _check_reference_joints(
        gt.reshape(-1, *gt.shape[-2:]),
        None if labelled is None else np.reshape(labelled, (-1, gt.shape[-2])),
        list(dict.fromkeys(needed)),
        protocol,
        dataset,
        examples,
    )
    pred_rel = pred - pred[..., root : root + 1, :]
    if protocol in ("zimmermann", "mcp"):
        gt_bone = skeleton.reference_bone_length(gt)
        pred_bone = skeleton.reference_bone_length(pred)
        if np.any(pred_bone <= 0):
            raise ValueError(f"protocol {protocol!r}: a prediction has a zero reference bone")
        pred_rel = pred_rel * (gt_bone / pred_bone)[..., None, None]
    return pred_rel + gt[..., root : root + 1, :], gt


# ----------------------------------------------------------------------------- PCK / AUC / EPE


def pck_curve(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``errors`` ``[M]`` at or below each threshold ``[T]`` -> ``[T]``."""
    errors = np.asarray(errors)
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(1)


def auc(curve: np.ndarray, thresholds: np.ndarray) -> float:
    """Normalised area under a PCK curve: ``trapz(curve, t) / trapz(1, t)``."""
    thresholds = np.asarray(thresholds, np.float64)
    return float(
        np.trapezoid(curve, thresholds) / np.trapezoid(np.ones_like(thresholds), thresholds)
    )


class KeypointEval:
    """Collects per-keypoint errors (hand3d's ``EvalUtil``) and reports PCK/AUC/EPE.

    Errors are stored in the unit they are fed in; the higher-level evaluators
    feed millimetres (3D) or pixels (2D).
    """

    def __init__(self, num_keypoints: int = skeleton.NUM_JOINTS):
        self.num_keypoints = num_keypoints
        self._errors: list[list[np.ndarray]] = [[] for _ in range(num_keypoints)]
        self.nonfinite = 0  # visible keypoints whose error (prediction) was NaN or inf

    def feed_errors(self, errors: np.ndarray, visible: np.ndarray | None = None) -> None:
        """Adds errors ``[B, K]`` (or ``[K]``) where ``visible`` ``[B, K]``; NaN counts as inf."""
        errors = np.asarray(errors, np.float64).reshape(-1, self.num_keypoints)
        vis = (
            np.ones(errors.shape, bool)
            if visible is None
            else np.asarray(visible, bool).reshape(errors.shape)
        )
        bad = vis & ~np.isfinite(errors)
        self.nonfinite += int(bad.sum())
        errors = np.where(bad, np.inf, errors)
        for k in range(self.num_keypoints):
            self._errors[k].append(errors[vis[:, k], k])

    def feed(self, gt: np.ndarray, pred: np.ndarray, visible: np.ndarray | None = None) -> None:
        """Adds the Euclidean distances between ``gt`` and ``pred`` ``[B, K, D]``.

        Raises ValueError if the ground truth of a visible keypoint is not finite.
        """
        gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
        vis = (
            np.ones(gt.shape[:-1], bool) if visible is None else np.asarray(visible, bool)
        ).reshape(gt.shape[:-1])
        bad_gt = vis & ~np.isfinite(gt).all(-1)
        if bad_gt.any():
            b, k = np.argwhere(bad_gt.reshape(-1, self.num_keypoints))[0]
            raise ValueError(
                f"ground truth of visible keypoint {k} (sample {b} of the batch) is not finite; "
                "mark unlabelled keypoints as not visible"
            )
        self.feed_errors(np.sqrt(((gt - pred) ** 2).sum(-1)), vis)

    def errors(self, k: int) -> np.ndarray:
        """All errors of keypoint ``k`` collected so far ``[M]``."""
        return np.concatenate(self._errors[k]) if self._errors[k] else np.zeros(0)

    @property
    def count(self) -> int:
        """Number of keypoint errors collected."""
        return sum(len(self.errors(k)) for k in range(self.num_keypoints))

    def get_measures(self, val_min: float, val_max: float, steps: int) -> dict:
        """EPE mean/median, AUC and the mean PCK curve over ``linspace(val_min, val_max, steps)``.

        Keypoints without any visible error are left out, as in hand3d. Also
        ``nonfinite_predictions``: how many of the errors were infinite (non-finite
        predictions), each a miss at every threshold.
        """
        thresholds = np.linspace(val_min, val_max, steps)
        means, medians, aucs, curves = [], [], [], []
        for k in range(self.num_keypoints):
            data = self.errors(k)
            if len(data) == 0:
                continue
            means.append(data.mean())
            medians.append(np.median(data))
            curve = pck_curve(data, thresholds)
            curves.append(curve)
            aucs.append(auc(curve, thresholds))
        if not curves:
            raise ValueError("no visible keypoint errors were collected")
        return {
            "epe_mean": float(np.mean(means)),
            "epe_median": float(np.mean(medians)),
            "auc": float(np.mean(aucs)),
            "pck": np.mean(curves, 0),
            "thresholds": thresholds,
            "per_keypoint_pck": curves,
            "nonfinite_predictions": self.nonfinite,
        }


# ----------------------------------------------------------------------------- evaluators


class PoseEval3D:
    """3D keypoint evaluation of RHD/STB style under a named alignment protocol.

    ``add(pred, gt, visible, examples, labelled)`` takes metres ``[B, 21, 3]``
    (``examples``: ``[B]`` names for errors; ``labelled``: see :func:`align`);
    ``result()`` gives millimetres: EPE mean/median, AUC over ``(auc_min, auc_max,
    steps)`` mm (default 0-50 mm, 20 points), the AUC over 20-50 mm with the same number
    of points (``linspace(20, 50, steps)``), the mean PCK curve and
    ``nonfinite_predictions``. ``dataset`` names the data in errors.
    """

    def __init__(
        self,
        protocol: str = "zimmermann",
        auc_min: float = 0.0,
        auc_max: float = 50.0,
        steps: int = 20,
        *,
        dataset: str = "",
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.protocol, self.range, self.dataset = protocol, (auc_min, auc_max, steps), dataset
        self.util = KeypointEval(skeleton.NUM_JOINTS)

    def add(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        visible: np.ndarray | None = None,
        examples: Sequence | None = None,
        labelled: np.ndarray | None = None,
    ) -> None:
        pred = np.asarray(pred).reshape(-1, skeleton.NUM_JOINTS, 3)
        gt = np.asarray(gt).reshape(-1, skeleton.NUM_JOINTS, 3)
        if visible is None:
            visible = np.isfinite(gt).all(-1)
        visible = np.asarray(visible, bool).reshape(gt.shape[:2])
        aligned, gt_used = align(
            pred,
            gt,
            visible,
            self.protocol,
            labelled=labelled,
            dataset=self.dataset,
            examples=examples,
        )
        self.util.feed(gt_used * 1000.0, aligned * 1000.0, visible)

    def result(self) -> dict:
        lo, hi, steps = self.range
        out = self.util.get_measures(lo, hi, steps)
        out["auc_20_50"] = self.util.get_measures(20.0, 50.0, steps)["auc"]
        out.update(protocol=self.protocol, unit="mm", auc_range=(lo, hi, steps))
        return _rename(out, "mm")


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """The angle in degrees of rotation matrices ``R`` ``[..., 3, 3]`` (0-180)."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def image_plane_turn(R: np.ndarray) -> np.ndarray:
    """T of rotations ``R [..., 3, 3]`` of camera space split as ``R = S T`` (or ``T S``): the
    rotation about the viewing axis z by ``atan2(R_10 - R_01, R_00 + R_11)``, the turn within
    the image; ``T^-1 R`` is then about an axis in the image plane, the turn in depth."""
    R = np.asarray(R, np.float64)
    angle = np.arctan2(R[..., 1, 0] - R[..., 0, 1], R[..., 0, 0] + R[..., 1, 1])
    c, s, zero, one = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def image_plane_angles_deg(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``R [..., 3, 3]`` of camera space (z the viewing axis) split as ``R = S T``:
    T about the viewing axis (a turn within the image, :func:`image_plane_turn`) and S about
    an axis in the image plane (a turn in depth, which 2D joints leave ambiguous).

    Returns:
      ``(in_plane, out_of_plane)``, degrees (0-180 each): T's angle and S's, the angle
      between ``R z`` and z. Either order (``S T`` or ``T S``) and ``R`` or its inverse give
      the same two angles.
    """
    R = np.asarray(R, np.float64)
    in_plane = rotation_angle_deg(image_plane_turn(R))
    out_of_plane = np.degrees(np.arccos(np.clip(R[..., 2, 2], -1.0, 1.0)))
    return in_plane, out_of_plane


class RotationError:
    """How far each predicted hand is turned from the true one: the angle of the proper
    rotation in the similarity (:func:`similarity_transform`) that best maps an example's
    predicted joints onto its true ones, over the joints that are scored.

    It separates a hand turned wrong from one articulated wrong, which the aligned 3D
    errors mix, and splits the turn into its parts within the image and in depth
    (:func:`image_plane_angles_deg`; joints in camera space). ``add(pred, gt, weights)``:
    ``[B, 21, 3]`` and ``[B, 21]`` (a joint counts where its weight is positive and its
    true position finite). An example with fewer than 3 such joints, or a non-finite
    prediction at one of them, has no angle; it is counted in ``unscored``, not dropped
    silently.
    """

    def __init__(self):
        self.angles: list[float] = []
        self.in_plane: list[float] = []
        self.out_of_plane: list[float] = []
        self.unscored = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, weights: np.ndarray) -> None:
        pred = np.asarray(pred, np.float64).reshape(-1, skeleton.NUM_JOINTS, 3)
        gt = np.asarray(gt, np.float64).reshape(pred.shape)
        weights = (np.asarray(weights).reshape(pred.shape[:2]) > 0) & np.isfinite(gt).all(-1)
        for p, g, w in zip(pred, gt, weights, strict=True):
            if w.sum() < 3 or not np.isfinite(p[w]).all():
                self.unscored += 1
                continue
            _, R, _ = similarity_transform(p, g, w.astype(np.float64))
            self.angles.append(float(rotation_angle_deg(R)))
            in_plane, out_of_plane = image_plane_angles_deg(R)
            self.in_plane.append(float(in_plane))
            self.out_of_plane.append(float(out_of_plane))

    def result(self) -> dict:
        """``median_deg``, ``mean_deg``, ``over_45``/``over_90`` (fractions of the scored
        examples), ``in_plane_median_deg`` and ``out_of_plane_median_deg`` (the medians of
        the two parts), ``examples`` (scored) and ``unscored``; NaN figures when none is
        scored."""
        a = np.asarray(self.angles)
        names = ("median_deg", "mean_deg", "over_45", "over_90")
        stats = dict.fromkeys(names + ("in_plane_median_deg", "out_of_plane_median_deg"), np.nan)
        if len(a):
            stats = dict(
                median_deg=float(np.median(a)),
                mean_deg=float(a.mean()),
                over_45=float((a > 45).mean()),
                over_90=float((a > 90).mean()),
                in_plane_median_deg=float(np.median(self.in_plane)),
                out_of_plane_median_deg=float(np.median(self.out_of_plane)),
            )
        return stats | dict(examples=len(a), unscored=self.unscored)


class PoseEval2D:
    """2D keypoint PCK in pixels, 0-30 px with 20 points (hand3d's eval2d.py).

    ``add(pred, gt, visible, scale)``: pixels ``[B, 21, 2]``; ``scale`` ``[B]`` (default 1)
    converts each sample's distances into the reported frame's pixels, for frames related
    by a similarity (e.g. crop pixels -> dataset image pixels: image px per crop px).
    ``frame`` labels the result: 'crop' (handfit's network input) or 'image' (the
    dataset's image, as hand3d's eval2d.py scores and papers report).
    """

    def __init__(
        self, auc_min: float = 0.0, auc_max: float = 30.0, steps: int = 20, *, frame: str = "crop"
    ):
        if frame not in ("crop", "image"):
            raise ValueError(f"frame must be 'crop' or 'image', got {frame!r}")
        self.range, self.frame = (auc_min, auc_max, steps), frame
        self.util = KeypointEval(skeleton.NUM_JOINTS)

    def add(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        visible: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        gt = np.asarray(gt, np.float64).reshape(-1, skeleton.NUM_JOINTS, 2)
        if visible is None:
            visible = np.isfinite(gt).all(-1)
        factor = np.ones(len(gt)) if scale is None else np.asarray(scale, np.float64)
        pred = np.asarray(pred, np.float64).reshape(gt.shape)
        self.util.feed(gt * factor[:, None, None], pred * factor[:, None, None], visible)

    def result(self) -> dict:
        out = self.util.get_measures(*self.range)
        out.update(protocol="2d", unit="px", frame=self.frame, auc_range=self.range)
        return _rename(out, "px")


def dexter_align(pred_tips: np.ndarray, gt_tips: np.ndarray) -> np.ndarray | None:
    """Dexter+Object alignment of one frame's fingertips ``[5, 3]`` (gt NaN = missing).

    Drops missing tips; returns None for a frame with fewer than 2 valid tips.
    Otherwise the prediction is translated so the centroids of the valid tips
    match and scaled about that centroid by the ratio of the mean distances of
    the valid tips to their centroid (gt / pred). Returns ``[5, 3]``.
    """
    pred_tips = np.asarray(pred_tips, np.float64)
    gt_tips = np.asarray(gt_tips, np.float64)
    valid = np.isfinite(gt_tips).all(-1)
    if valid.sum() < 2:
        return None
    c_pred, c_gt = pred_tips[valid].mean(0), gt_tips[valid].mean(0)
    d_pred = np.linalg.norm(pred_tips[valid] - c_pred, axis=-1).mean()
    d_gt = np.linalg.norm(gt_tips[valid] - c_gt, axis=-1).mean()
    s = d_gt / d_pred if d_pred > 0 else 1.0
    return (pred_tips - c_pred) * s + c_gt


class DexterEval:
    """The Dexter+Object fingertip protocol (:func:`dexter_align`); AUC over 20-50 mm, 20 points.

    ``add(pred, gt)``: canonical joints ``[B, 21, 3]`` metres (only the fingertips
    are used; gt NaN = missing) or fingertips ``[B, 5, 3]``.
    """

    def __init__(self, auc_min: float = 20.0, auc_max: float = 50.0, steps: int = 20):
        self.range = (auc_min, auc_max, steps)
        self.util = KeypointEval(len(skeleton.FINGERTIPS))
        self.skipped_frames = 0
        self.missing_tips = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
        if gt.shape[-2] == skeleton.NUM_JOINTS:
            tips = list(skeleton.FINGERTIPS)
            pred, gt = pred[..., tips, :], gt[..., tips, :]
        pred, gt = pred.reshape(-1, 5, 3), gt.reshape(-1, 5, 3)
        for p, g in zip(pred, gt, strict=True):
            valid = np.isfinite(g).all(-1)
            self.missing_tips += int((~valid).sum())
            aligned = dexter_align(p, g)
            if aligned is None:
                self.skipped_frames += 1
                continue
            self.util.feed(np.where(valid[:, None], g, 0.0) * 1000.0, aligned * 1000.0, valid)

    def result(self) -> dict:
        out = self.util.get_measures(*self.range)
        out.update(
            protocol="dexter_object_tips",
            unit="mm",
            auc_range=self.range,
            skipped_frames=self.skipped_frames,
            missing_tips=self.missing_tips,
        )
        return _rename(out, "mm")


# ----------------------------------------------------------------------------- FreiHAND


def nearest_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each point of ``a`` ``[N, 3]`` the distance to the nearest point of ``b`` ``[M, 3]``.

    Non-finite points are infinitely far from everything (their distance is inf, and
    they are nobody's nearest point).
    """
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.full(len(a), np.inf)
    finite_a, finite_b = np.isfinite(a).all(-1), np.isfinite(b).all(-1)
    if finite_a.any() and finite_b.any():
        out[finite_a] = cKDTree(b[finite_b]).query(a[finite_a])[0]
    return out


def f_score(pred: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """F-score of point sets ``pred`` ``[N, 3]`` and ``gt`` ``[M, 3]`` at ``threshold``.

    precision = fraction of pred points closer than ``threshold`` to gt; recall = fraction
    of gt points within it of pred; F = 2PR / (P + R) (0 if both are 0).
    Returns ``(f, precision, recall)``. "Within" is strict (``d < threshold``), as in
    FreiHAND's toolbox (whose ``calculate_fscore`` names the two fractions the other way
    round; F is the same).
    """
    precision = float((nearest_distances(pred, gt) < threshold).mean())
    recall = float((nearest_distances(gt, pred) < threshold).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, precision, recall


def freihand_align(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, tuple]:
    """FreiHAND eval.py's ``align_w_scale(gt, pred)``: ``pred`` ``[N, 3]`` aligned to ``gt``.

    Both centred on their means and divided by their Frobenius norms (+1e-8); the
    orthogonal Procrustes rotation ``R`` (``scipy.linalg.orthogonal_procrustes``: a
    reflection when that fits better) and scale ``s`` (sum of singular values) map
    them; the result is ``pred_c / |pred_c| @ R.T * s * |gt_c| + mean(gt)``. Returns the
    aligned points and the transform ``(R, s, |gt_c|, mean(gt) - mean(pred))`` that
    :func:`freihand_align_by_trafo` applies.
    """
    from scipy.linalg import orthogonal_procrustes

    t1, t2 = gt.mean(0), pred.mean(0)
    gt_c, pred_c = gt - t1, pred - t2
    s1 = np.linalg.norm(gt_c) + 1e-8
    s2 = np.linalg.norm(pred_c) + 1e-8
    R, s = orthogonal_procrustes(gt_c / s1, pred_c / s2)
    return np.dot(pred_c / s2, R.T) * s * s1 + t1, (R, s, s1, t1 - t2)


def freihand_align_by_trafo(points: np.ndarray, trafo: tuple) -> np.ndarray:
    """FreiHAND eval.py's ``align_by_trafo``: the keypoints' transform applied to ``points``.

    Used there for vertices when the prediction is not a 778-vertex MANO mesh. Replicated
    as it is, although it neither divides by the keypoints' norm nor moves the points'
    own mean by the transform: ``(p - mean(p)) @ R.T * s * s1 + (t1 - t2) + mean(p)``.
    """
    R, s, s1, t = trafo
    mean = points.mean(0)
    return np.dot(points - mean, R.T) * s * s1 + t + mean


class FreiHANDEval:
    """FreiHAND's metrics as its official ``eval.py`` computes them (lmb-freiburg/freihand).

    ``add(pred_joints, gt_joints, pred_verts=None, gt_verts=None)``: metres,
    ``[B, 21, 3]`` and ``[B, V, 3]``. Per sample, as eval.py: joint errors unaligned and
    after aligning the joints to theirs; when prediction and ground truth have the same
    number of vertices (a MANO mesh), vertex errors unaligned and after aligning the
    vertices to theirs; otherwise no vertex errors, and the vertices are moved by the
    joints' transform (:func:`freihand_align_by_trafo`); F-scores at 5 and 15 mm of the
    unaligned and of the aligned vertices. Means and AUCs (0-50 mm, 100 points) as
    hand3d's ``EvalUtil``; errors in mm.

    ``alignment``: 'official' (:func:`freihand_align`: reflections allowed; protocol
    'freihand') or 'proper' (:func:`procrustes_align`, a proper rotation, and vertices moved
    by the joints' exact similarity; protocol 'freihand_proper'). A sample with a
    non-finite prediction misses everywhere (eval.py would stop on it).

    ``result()`` keys, with eval.py's scores.txt names: ``mpjpe_mm``, ``mpjpe_auc``
    (xyz_mean3d, xyz_auc3d), ``pa_mpjpe_mm``, ``pa_mpjpe_auc`` (xyz_al_*), ``mpvpe_mm``,
    ``mpvpe_auc``, ``pa_mpvpe_mm``, ``pa_mpvpe_auc`` (mesh_*, mesh_al_*), ``f@5mm``,
    ``f@15mm`` (f_score_5, f_score_15), ``pa_f@5mm``, ``pa_f@15mm`` (f_al_score_*); ``pck``
    and ``thresholds_mm``: the aligned joints' curve.
    """

    ALIGNMENTS = ("official", "proper")

    def __init__(
        self,
        alignment: str = "official",
        auc_min: float = 0.0,
        auc_max: float = 50.0,
        steps: int = 100,
        f_thresholds_mm: Sequence[float] = (5.0, 15.0),
    ):
        if alignment not in self.ALIGNMENTS:
            raise ValueError(f"alignment must be one of {self.ALIGNMENTS}, got {alignment!r}")
        self.alignment = alignment
        self.range = (auc_min, auc_max, steps)
        self.joints = KeypointEval(skeleton.NUM_JOINTS)
        self.joints_aligned = KeypointEval(skeleton.NUM_JOINTS)
        self.mesh: KeypointEval | None = None
        self.mesh_aligned: KeypointEval | None = None
        self.vertex_counts: tuple[int, int] | None = None  # (pred, gt) of the first sample
        self.f_thresholds_mm = tuple(f_thresholds_mm)
        self.f_scores: list[list[float]] = []
        self.f_scores_aligned: list[list[float]] = []

    def _align(self, pred: np.ndarray, gt: np.ndarray):
        """One sample ``[N, 3]``: (aligned prediction, transform); NaN and None if not finite."""
        if not np.isfinite(pred).all():
            return np.full_like(pred, np.nan), None
        if self.alignment == "official":
            return freihand_align(pred, gt)
        s, R, t = similarity_transform(pred, gt)
        return s * pred @ R.T + t, (s, R, t)

    def _by_trafo(self, points: np.ndarray, trafo) -> np.ndarray:
        if trafo is None:
            return np.full_like(points, np.nan)
        if self.alignment == "official":
            return freihand_align_by_trafo(points, trafo)
        s, R, t = trafo
        return s * points @ R.T + t

    def add(
        self,
        pred_joints: np.ndarray,
        gt_joints: np.ndarray,
        pred_verts: np.ndarray | None = None,
        gt_verts: np.ndarray | None = None,
    ) -> None:
        pred_joints = np.asarray(pred_joints, np.float64).reshape(-1, skeleton.NUM_JOINTS, 3)
        gt_joints = np.asarray(gt_joints, np.float64).reshape(pred_joints.shape)
        self.joints.feed(gt_joints * 1000.0, pred_joints * 1000.0)
        aligned = [self._align(p, g) for p, g in zip(pred_joints, gt_joints, strict=True)]
        self.joints_aligned.feed(gt_joints * 1000.0, np.stack([a for a, _ in aligned]) * 1000.0)
        if pred_verts is None:
            return
        pred_verts = np.asarray(pred_verts, np.float64).reshape(len(pred_joints), -1, 3)
        gt_verts = np.asarray(gt_verts, np.float64).reshape(len(pred_joints), -1, 3)
        if self.vertex_counts is None:  # eval.py's shape_is_mano, fixed by the first sample
            self.vertex_counts = (pred_verts.shape[1], gt_verts.shape[1])
            if pred_verts.shape[1] == gt_verts.shape[1]:
                self.mesh = KeypointEval(gt_verts.shape[1])
                self.mesh_aligned = KeypointEval(gt_verts.shape[1])
        if self.mesh is not None:
            self.mesh.feed(gt_verts * 1000.0, pred_verts * 1000.0)
            aligned_v = np.stack([self._align(p, g)[0] for p, g in zip(pred_verts, gt_verts)])
            self.mesh_aligned.feed(gt_verts * 1000.0, aligned_v * 1000.0)
        else:
            aligned_v = [self._by_trafo(p, t) for p, (_, t) in zip(pred_verts, aligned)]
        for p, p_al, g in zip(pred_verts, aligned_v, gt_verts, strict=True):
            self.f_scores.append([f_score(p, g, t / 1000.0)[0] for t in self.f_thresholds_mm])
            self.f_scores_aligned.append(
                [f_score(p_al, g, t / 1000.0)[0] for t in self.f_thresholds_mm]
            )

    def result(self) -> dict:
        joints = self.joints.get_measures(*self.range)
        aligned = self.joints_aligned.get_measures(*self.range)
        res = {
            "protocol": "freihand" if self.alignment == "official" else "freihand_proper",
            "unit": "mm",
            "mpjpe_mm": joints["epe_mean"],
            "mpjpe_auc": joints["auc"],
            "pa_mpjpe_mm": aligned["epe_mean"],
            "pa_mpjpe_auc": aligned["auc"],
            "pck": aligned["pck"],
            "thresholds_mm": aligned["thresholds"],
            "auc_range": self.range,
            "nonfinite_predictions": joints["nonfinite_predictions"],
        }
        if self.mesh is not None:
            mesh = self.mesh.get_measures(*self.range)
            mesh_aligned = self.mesh_aligned.get_measures(*self.range)
            res.update(
                mpvpe_mm=mesh["epe_mean"],
                mpvpe_auc=mesh["auc"],
                pa_mpvpe_mm=mesh_aligned["epe_mean"],
                pa_mpvpe_auc=mesh_aligned["auc"],
            )
        elif self.vertex_counts is not None:
            n_pred, n_gt = self.vertex_counts
            res["mesh_errors"] = (
                f"not computed: predicted meshes have {n_pred} vertices, true ones {n_gt} "
                "(eval.py reports -1); F-scores use vertices moved by the joints' transform"
            )
        if self.f_scores:
            for name, scores in (("f", self.f_scores), ("pa_f", self.f_scores_aligned)):
                for t, f in zip(self.f_thresholds_mm, np.mean(scores, 0), strict=True):
                    res[f"{name}@{t:g}mm"] = float(f)
        return res


# ----------------------------------------------------------------------------- segmentation


def segmentation_counts(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """True/false positives and false negatives ``[B, 3]`` of masks ``[B, H, W]`` (or ``[H, W]``).

    ``pred`` may be probabilities (binarised at ``> threshold``) or {0, 1}; ``gt`` is {0, 1}.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred mask {pred.shape} and gt mask {gt.shape} differ in shape")
    p = (pred > threshold).reshape(-1, *pred.shape[-2:])
    g = (gt > 0.5).reshape(p.shape)
    tp = (p & g).sum((1, 2))
    fp = (p & ~g).sum((1, 2))
    fn = (~p & g).sum((1, 2))
    return np.stack([tp, fp, fn], -1)


def segmentation_scores(tp, fp, fn) -> dict:
    """IoU, precision, recall, F1 from counts (arrays allowed).

    An empty denominator scores 1 (both masks empty: a perfect answer).
    """
    tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))

    def ratio(num, den):
        return np.where(den > 0, num / np.maximum(den, 1), 1.0)

    return {
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


class SegmentationEval:
    """Mask metrics: ``add(pred, gt)`` ``[B, H, W]``; ``result()`` gives the mean over images
    of IoU, precision, recall and F1 (protocol 'per_image_mean'), and the same from the counts
    summed over the dataset (keys prefixed ``total_``)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.counts: list[np.ndarray] = []

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.counts.append(segmentation_counts(pred, gt, self.threshold))

    def result(self) -> dict:
        counts = np.concatenate(self.counts)
        per_image = segmentation_scores(*counts.T)
        total = segmentation_scores(*counts.sum(0))
        out = {"protocol": "segmentation_per_image_mean", "images": len(counts)}
        out.update({k: float(v.mean()) for k, v in per_image.items()})
        out.update({f"total_{k}": float(v) for k, v in total.items()})
        return out


def _rename(out: dict, unit: str) -> dict:
    """Adds the unit to the EPE keys: ``epe_mean`` -> ``epe_mean_mm``."""
    for key in ("epe_mean", "epe_median"):
        out[f"{key}_{unit}"] = out.pop(key)
    out[f"thresholds_{unit}"] = out.pop("thresholds")
    return out
