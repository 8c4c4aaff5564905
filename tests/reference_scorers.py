"""The official scorers' formulas, re-typed for tests (no code shared with handfit.metrics).

* :class:`EvalUtil`: hand3d ``utils/general.py`` ``EvalUtil`` (lmb-freiburg/hand3d), which
  FreiHAND's ``utils/eval_util.py`` copies. It keeps NaN errors: no threshold counts them.
* :func:`hand3d_eval3d_feed`: hand3d ``eval3d.py``: ground truth made relative to its root,
  the root-relative prediction scaled by the ground truth's reference bone.
* :func:`hand3d_palm`: hand3d ``data/BinaryDbReader.py`` (``use_wrist_coord=False``): RHD's
  palm is ``0.5 * (xyz[0] + xyz[12])`` in RHD's order (wrist and middle MCP).
* :func:`align_w_scale`, :func:`align_by_trafo`, :func:`calculate_fscore`,
  :func:`freihand_scores`: FreiHAND ``eval.py`` (lmb-freiburg/freihand); the orthogonal
  Procrustes step written out with numpy's SVD as ``scipy.linalg.orthogonal_procrustes``
  defines it, the point-cloud distances (open3d there) by brute force.
"""

from __future__ import annotations

import numpy as np


class EvalUtil:
    """hand3d's EvalUtil: per-keypoint lists of the errors of visible keypoints."""

    def __init__(self, num_kp=21):
        self.data = [[] for _ in range(num_kp)]
        self.num_kp = num_kp

    def feed(self, keypoint_gt, keypoint_vis, keypoint_pred):
        keypoint_gt = np.squeeze(keypoint_gt)
        keypoint_pred = np.squeeze(keypoint_pred)
        keypoint_vis = np.squeeze(keypoint_vis).astype("bool")
        euclidean_dist = np.sqrt(np.sum(np.square(keypoint_gt - keypoint_pred), axis=1))
        for i in range(keypoint_gt.shape[0]):
            if keypoint_vis[i]:
                self.data[i].append(euclidean_dist[i])

    def get_measures(self, val_min, val_max, steps):
        """(epe_mean, epe_median, auc, pck_curve, thresholds), hand3d's order."""
        thresholds = np.linspace(val_min, val_max, steps)
        norm_factor = np.trapezoid(np.ones_like(thresholds), thresholds)
        means, medians, aucs, curves = [], [], [], []
        for part_id in range(self.num_kp):
            if len(self.data[part_id]) == 0:
                continue
            data = np.array(self.data[part_id])
            means.append(np.mean(data))
            medians.append(np.median(data))
            curve = np.array([np.mean((data <= t).astype("float")) for t in thresholds])
            curves.append(curve)
            aucs.append(np.trapezoid(curve, thresholds) / norm_factor)
        return (
            np.mean(np.array(means)),
            np.mean(np.array(medians)),
            np.mean(np.array(aucs)),
            np.mean(np.array(curves), 0),
            thresholds,
        )


def hand3d_eval3d_feed(util: EvalUtil, gt, pred, vis=None, root=0, bone=(9, 10)):
    """eval3d.py for one hand ``[21, 3]`` (canonical order): root-relative, gt bone scale."""
    scale = np.linalg.norm(gt[bone[1]] - gt[bone[0]])
    pred_rel = pred - pred[root]
    pred_rel = pred_rel / np.linalg.norm(pred_rel[bone[1]] - pred_rel[bone[0]]) * scale
    util.feed(gt - gt[root], np.ones(21) if vis is None else vis, pred_rel)


def hand3d_palm(xyz_rhd_order):
    """BinaryDbReader.py: the palm replaces joint 0: 0.5 * (xyz[0] + xyz[12]) (RHD order)."""
    out = np.array(xyz_rhd_order, np.float64, copy=True)
    out[..., 0, :] = 0.5 * (xyz_rhd_order[..., 0, :] + xyz_rhd_order[..., 12, :])
    return out


def _orthogonal_procrustes(A, B):
    """scipy.linalg.orthogonal_procrustes(A, B): R minimising |A R - B|, and sum(sigma)."""
    u, w, vt = np.linalg.svd((B.T @ A).T)
    return u @ vt, w.sum()


def align_w_scale(mtx1, mtx2, return_trafo=False):
    """eval.py: align mtx2 (prediction) to mtx1 (ground truth)."""
    t1 = mtx1.mean(0)
    t2 = mtx2.mean(0)
    mtx1_t = mtx1 - t1
    mtx2_t = mtx2 - t2
    s1 = np.linalg.norm(mtx1_t) + 1e-8
    mtx1_t /= s1
    s2 = np.linalg.norm(mtx2_t) + 1e-8
    mtx2_t /= s2
    R, s = _orthogonal_procrustes(mtx1_t, mtx2_t)
    mtx2_t = np.dot(mtx2_t, R.T) * s
    mtx2_t = mtx2_t * s1 + t1
    if return_trafo:
        return R, s, s1, t1 - t2
    return mtx2_t


def align_by_trafo(mtx, trafo):
    """eval.py: the keypoints' transform applied to the vertices (non-MANO predictions)."""
    t2 = mtx.mean(0)
    mtx_t = mtx - t2
    R, s, s1, t1 = trafo
    return np.dot(mtx_t, R.T) * s * s1 + t1 + t2


def _closest(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1)


def calculate_fscore(gt, pr, th=0.01):
    """eval.py (open3d's point-cloud distances by brute force)."""
    d1 = _closest(gt, pr)
    d2 = _closest(pr, gt)
    recall = float(sum(d < th for d in d2)) / float(len(d2))
    precision = float(sum(d < th for d in d1)) / float(len(d1))
    if recall + precision > 0:
        return 2 * recall * precision / (recall + precision), precision, recall
    return 0, precision, recall


def freihand_scores(xyz_list, verts_list, xyz_pred_list, verts_pred_list):
    """eval.py's main loop and scores.txt values (metres, as eval.py; cm only when printed)."""
    eval_xyz, eval_xyz_aligned = EvalUtil(), EvalUtil()
    eval_mesh_err = EvalUtil(num_kp=len(verts_list[0]))
    eval_mesh_err_aligned = EvalUtil(num_kp=len(verts_list[0]))
    f_score, f_score_aligned = [], []
    f_threshs = [0.005, 0.015]
    shape_is_mano = None
    for xyz, verts, xyz_pred, verts_pred in zip(
        xyz_list, verts_list, xyz_pred_list, verts_pred_list
    ):
        xyz, verts, xyz_pred, verts_pred = (
            np.array(x, np.float64) for x in (xyz, verts, xyz_pred, verts_pred)
        )
        eval_xyz.feed(xyz, np.ones_like(xyz[:, 0]), xyz_pred)
        if shape_is_mano is None:
            shape_is_mano = verts_pred.shape[0] == verts.shape[0]
        if shape_is_mano:
            eval_mesh_err.feed(verts, np.ones_like(verts[:, 0]), verts_pred)
        xyz_pred_aligned = align_w_scale(xyz, xyz_pred)
        if shape_is_mano:
            verts_pred_aligned = align_w_scale(verts, verts_pred)
        else:
            trafo = align_w_scale(xyz, xyz_pred, return_trafo=True)
            verts_pred_aligned = align_by_trafo(verts_pred, trafo)
        eval_xyz_aligned.feed(xyz, np.ones_like(xyz[:, 0]), xyz_pred_aligned)
        if shape_is_mano:
            eval_mesh_err_aligned.feed(verts, np.ones_like(verts[:, 0]), verts_pred_aligned)
        f_score.append([calculate_fscore(verts, verts_pred, t)[0] for t in f_threshs])
        f_score_aligned.append(
            [calculate_fscore(verts, verts_pred_aligned, t)[0] for t in f_threshs]
        )
    out = {}
    for name, util in (("xyz", eval_xyz), ("xyz_al", eval_xyz_aligned)):
        mean, _, auc, _, _ = util.get_measures(0.0, 0.05, 100)
        out[f"{name}_mean3d"], out[f"{name}_auc3d"] = mean, auc
    if shape_is_mano:
        for name, util in (("mesh", eval_mesh_err), ("mesh_al", eval_mesh_err_aligned)):
            mean, _, auc, _, _ = util.get_measures(0.0, 0.05, 100)
            out[f"{name}_mean3d"], out[f"{name}_auc3d"] = mean, auc
    f_score, f_score_aligned = np.array(f_score).T, np.array(f_score_aligned).T
    for f, fa, t in zip(f_score, f_score_aligned, f_threshs):
        out[f"f_score_{round(t * 1000)}"] = f.mean()
        out[f"f_al_score_{round(t * 1000)}"] = fa.mean()
    return out
