"""Evaluation metrics: PCK/AUC/EPE under named protocols, Procrustes errors, F-scores, masks.

Conventions (datasets.md §5): keypoints come in metres (3D) or pixels (2D);
reported errors are in millimetres (3D) or pixels (2D). Every result dict names
the protocol it was computed under (``'protocol'``), so a number is never shown
without it.

PCK/AUC/EPE follow hand3d's ``EvalUtil``: per-keypoint Euclidean errors of
visible keypoints only; ``PCK(t) = mean(d <= t)`` over ``thresholds =
linspace(min, max, steps)``; per-keypoint ``AUC = trapz(pck, t) / trapz(1, t)``
averaged over the keypoints that have any data; "EPE mean" = mean over keypoints
of each keypoint's mean error, "EPE median" = mean over keypoints of each
keypoint's median error.

3D alignment protocols (:data:`PROTOCOLS`), applied per hand before the errors:

* ``'zimmermann'`` (default; Zimmermann & Brox): both hands made relative to
  joint 0 (the root as the dataset defines it: STB's palm centre; RHD's wrist,
  or hand3d's palm with ``RHD(root='palm')``); the prediction is scaled so its
  reference bone (middle MCP-PIP) equals the ground truth's, then placed at the
  ground-truth root. Ground-truth root and scale are assumed. The root joint is
  scored (its error is 0), as in hand3d.
* ``'mcp'``: the same with the middle MCP (joint 9) as root.
* ``'procrustes'``: similarity (rotation, translation, uniform scale) alignment
  of the prediction to the ground truth over the visible joints.
* ``'root'``: root-relative at joint 0 without rescaling (metric-scale predictions).
* ``'none'``: no alignment (absolute camera-frame errors).
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
    of ``pred`` is transformed.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    lead = pred.shape[:-2]
    flat_p = pred.reshape((-1,) + pred.shape[-2:])
    flat_g = gt.reshape((-1,) + gt.shape[-2:])
    flat_w = None if weights is None else np.asarray(weights).reshape(-1, pred.shape[-2])
    out = np.empty_like(flat_p)
    for i in range(len(flat_p)):
        s, R, t = similarity_transform(
            flat_p[i], flat_g[i], None if flat_w is None else flat_w[i], scale=scale
        )
        out[i] = s * flat_p[i] @ R.T + t
    return out.reshape(lead + pred.shape[-2:])


def align(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    protocol: str = "zimmermann",
) -> tuple[np.ndarray, np.ndarray]:
    """Aligns ``pred`` to ``gt`` (both ``[B, 21, 3]``) under a named protocol.

    Returns ``(pred_aligned, gt_used)``, both ``[B, 21, 3]``, whose per-joint
    distances are the protocol's errors.
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

    def feed_errors(self, errors: np.ndarray, visible: np.ndarray | None = None) -> None:
        """Adds errors ``[B, K]`` (or ``[K]``); only entries with ``visible`` ``[B, K]`` count."""
        errors = np.asarray(errors, np.float64).reshape(-1, self.num_keypoints)
        vis = (
            np.ones(errors.shape, bool)
            if visible is None
            else np.asarray(visible, bool).reshape(errors.shape)
        )
        vis = vis & np.isfinite(errors)
        for k in range(self.num_keypoints):
            self._errors[k].append(errors[vis[:, k], k])

    def feed(self, gt: np.ndarray, pred: np.ndarray, visible: np.ndarray | None = None) -> None:
        """Adds the Euclidean distances between ``gt`` and ``pred`` ``[B, K, D]``."""
        diff = np.asarray(gt, np.float64) - np.asarray(pred, np.float64)
        self.feed_errors(np.sqrt((diff**2).sum(-1)), visible)

    def errors(self, k: int) -> np.ndarray:
        """All errors of keypoint ``k`` collected so far ``[M]``."""
        return np.concatenate(self._errors[k]) if self._errors[k] else np.zeros(0)

    @property
    def count(self) -> int:
        """Number of keypoint errors collected."""
        return sum(len(self.errors(k)) for k in range(self.num_keypoints))

    def get_measures(self, val_min: float, val_max: float, steps: int) -> dict:
        """EPE mean/median, AUC and the mean PCK curve over ``linspace(val_min, val_max, steps)``.

        Keypoints without any visible error are left out, as in hand3d.
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
        }


# ----------------------------------------------------------------------------- evaluators


class PoseEval3D:
    """3D keypoint evaluation of RHD/STB style under a named alignment protocol.

    ``add(pred, gt, visible)`` takes metres ``[B, 21, 3]``; ``result()`` gives
    millimetres: EPE mean/median, AUC over ``(auc_min, auc_max, steps)`` mm (default
    0-50 mm, 20 points), the AUC over 20-50 mm with the same number of points
    (``linspace(20, 50, steps)``), and the mean PCK curve.
    """

    def __init__(
        self,
        protocol: str = "zimmermann",
        auc_min: float = 0.0,
        auc_max: float = 50.0,
        steps: int = 20,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.protocol, self.range = protocol, (auc_min, auc_max, steps)
        self.util = KeypointEval(skeleton.NUM_JOINTS)

    def add(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None) -> None:
        pred = np.asarray(pred).reshape(-1, skeleton.NUM_JOINTS, 3)
        gt = np.asarray(gt).reshape(-1, skeleton.NUM_JOINTS, 3)
        if visible is None:
            visible = np.isfinite(gt).all(-1)
        visible = np.asarray(visible, bool).reshape(gt.shape[:2])
        aligned, gt_used = align(pred, gt, visible, self.protocol)
        self.util.feed(gt_used * 1000.0, aligned * 1000.0, visible)

    def result(self) -> dict:
        lo, hi, steps = self.range
        out = self.util.get_measures(lo, hi, steps)
        out["auc_20_50"] = self.util.get_measures(20.0, 50.0, steps)["auc"]
        out.update(protocol=self.protocol, unit="mm", auc_range=(lo, hi, steps))
        return _rename(out, "mm")


class PoseEval2D:
    """2D keypoint PCK in pixels: ``add(pred, gt, visible)`` ``[B, 21, 2]``; 0-30 px, 20 points."""

    def __init__(self, auc_min: float = 0.0, auc_max: float = 30.0, steps: int = 20):
        self.range = (auc_min, auc_max, steps)
        self.util = KeypointEval(skeleton.NUM_JOINTS)

    def add(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None) -> None:
        gt = np.asarray(gt).reshape(-1, skeleton.NUM_JOINTS, 2)
        if visible is None:
            visible = np.isfinite(gt).all(-1)
        self.util.feed(gt, np.asarray(pred).reshape(gt.shape), visible)

    def result(self) -> dict:
        out = self.util.get_measures(*self.range)
        out.update(protocol="2d", unit="px", auc_range=self.range)
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
    """For each point of ``a`` ``[N, 3]`` the distance to the nearest point of ``b`` ``[M, 3]``."""
    from scipy.spatial import cKDTree

    return cKDTree(np.asarray(b, np.float64)).query(np.asarray(a, np.float64))[0]


def f_score(pred: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """F-score of point sets ``pred`` ``[N, 3]`` and ``gt`` ``[M, 3]`` at ``threshold``.

    precision = fraction of pred points closer than ``threshold`` to gt; recall = fraction
    of gt points within it of pred; F = 2PR / (P + R) (0 if both are 0).
    Returns ``(f, precision, recall)``. "Within" is strict (``d < threshold``), as in
    FreiHAND's toolbox.
    """
    precision = float((nearest_distances(pred, gt) < threshold).mean())
    recall = float((nearest_distances(gt, pred) < threshold).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, precision, recall


class FreiHANDEval:
    """FreiHAND's metrics: PA-MPJPE, PA-MPVPE (mm), F@5mm and F@15mm, AUC over 0-50 mm, 100 points.

    ``add(pred_joints, gt_joints, pred_verts=None, gt_verts=None)``: metres,
    ``[B, 21, 3]`` and ``[B, V, 3]``. Joints and vertices are each Procrustes-
    aligned (similarity, proper rotation) to their ground truth per sample; F-scores
    use the aligned vertices. Means are over all samples and points.
    """

    def __init__(
        self,
        auc_min: float = 0.0,
        auc_max: float = 50.0,
        steps: int = 100,
        f_thresholds_mm: Sequence[float] = (5.0, 15.0),
    ):
        self.range = (auc_min, auc_max, steps)
        self.joints = KeypointEval(skeleton.NUM_JOINTS)
        self.vertex_errors: list[np.ndarray] = []
        self.f_thresholds_mm = tuple(f_thresholds_mm)
        self.f_scores: list[list[float]] = []

    def add(self, pred_joints, gt_joints, pred_verts=None, gt_verts=None) -> None:
        pred_joints = np.asarray(pred_joints, np.float64).reshape(-1, skeleton.NUM_JOINTS, 3)
        gt_joints = np.asarray(gt_joints, np.float64).reshape(pred_joints.shape)
        aligned = procrustes_align(pred_joints, gt_joints)
        self.joints.feed(gt_joints * 1000.0, aligned * 1000.0)
        if pred_verts is None:
            return
        pred_verts = np.asarray(pred_verts, np.float64).reshape(len(pred_joints), -1, 3)
        gt_verts = np.asarray(gt_verts, np.float64).reshape(pred_verts.shape)
        aligned_v = procrustes_align(pred_verts, gt_verts)
        self.vertex_errors.append(
            1000.0 * np.linalg.norm(aligned_v - gt_verts, axis=-1).reshape(-1)
        )
        for p, g in zip(aligned_v, gt_verts, strict=True):
            self.f_scores.append([f_score(p, g, t / 1000.0)[0] for t in self.f_thresholds_mm])

    def result(self) -> dict:
        out = self.joints.get_measures(*self.range)
        errors = np.concatenate([self.joints.errors(k) for k in range(skeleton.NUM_JOINTS)])
        res = {
            "protocol": "freihand_procrustes",
            "unit": "mm",
            "pa_mpjpe_mm": float(errors.mean()),
            "auc_joints": out["auc"],
            "pck": out["pck"],
            "thresholds_mm": out["thresholds"],
            "auc_range": self.range,
        }
        if self.vertex_errors:
            res["pa_mpvpe_mm"] = float(np.concatenate(self.vertex_errors).mean())
            mean_f = np.mean(self.f_scores, 0)
            for t, f in zip(self.f_thresholds_mm, mean_f, strict=True):
                res[f"f@{t:g}mm"] = float(f)
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
