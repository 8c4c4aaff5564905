"""Evaluation (``--mode=eval``): checkpoints on the configured test sets, scored as the papers do.

:func:`evaluate` restores ``<workdir>``'s newest checkpoint (or ``config.eval.step``), runs
every test set of ``config.data.test`` through the DHPE (one jitted forward at a fixed
batch shape; the last batch is padded and the padding dropped) and writes a report to
``<workdir>/eval/`` (the step is recorded in ``metrics.json``; a later evaluation of the
same workdir overwrites it):

* ``metrics.json``: every metric, each with the protocol it was computed under;
* ``report.md``: the table printed on the console (hand model, checkpoint, protocols);
* ``pck_<dataset>.png``: 3D PCK over 20-50 mm with the paper's AUC where it has one
  (:data:`REFERENCE_AUC`: RHD, STB, Dexter+Object);
* ``samples/``: for the first ``config.eval.num_samples`` examples of each test set, an
  overlay PNG (rendered mask, skeleton, mesh outline) and the meshes (.obj);
* ``freihand_submission/pred.json`` and ``pred.zip``: on FreiHAND's evaluation split, the
  benchmark's submission (:func:`write_freihand_submission`).

Scored outputs ("variants"), all of the same examples under the same protocols:

* ``network``: the DHPE's last iteration p(T) (Eq. 5), its mesh m(p(T)) and joints J(m).
* ``refined``: p(T) after test-time refinement (Eq. 13, ``handfit.refine``), when
  ``config.refine.enabled``: fitted to the refiner's 2D joints j2D(T) (re-estimated by f_R
  at every step, or kept fixed with ``config.refine.reestimate_joints2d=False``) and to the
  silhouette of m(p(T)) (no ground truth is used).
* ``baseline``: the paper's p(0), MANO's mean pose placed as the network places its output
  (``dhpe.place`` with the crop's intrinsics): what the network starts from.

Protocols (``handfit.metrics``; docs/datasets.md): 3D joints under ``config.eval.protocol``
(default Zimmermann & Brox's: ground-truth root and reference-bone scale, which is how
Eq. 8's normalisation is undone at test time) with PCK/AUC over 20-50 mm; Dexter+Object
by its fingertip protocol; datasets with ground-truth meshes (FreiHAND, synthetic) also by
FreiHAND's official eval.py scores (:class:`metrics.FreiHANDEval`); 2D PCK (0-30 px) of the
CPM's joints j2D(0), the refiner's j2D(T) and each variant's projected joints, in crop
pixels (``pose2d``) and in the dataset image's pixels as hand3d's eval2d.py
(``pose2d_image``); the rendered mask (hard rasteriser at the crop's resolution) against
the ground-truth mask where there is one. Non-finite predictions are misses, counted in
each result (``nonfinite_predictions``) and reported on the console.
When a dataset's joint 0 is a palm point, the prediction's joint 0 is that palm point
too (:func:`palm_centre`): STB's palm centre is the midpoint of wrist and ring MCP (the
inverse of ``handfit.data.stb.palm_to_wrist``), RHD's palm (``root='palm'``) that of wrist
and middle MCP, as in hand3d.

``config.eval.workdirs`` compares several runs: each is evaluated as above (its report in
its own ``eval/``), and ``<workdir>/eval/`` receives ``comparison.md``, ``comparison.json``
and ``comparison_pck_<dataset>.png`` with a curve per workdir.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handfit import checkpoint, config_check, mano, metrics, params, refine, render, skeleton, viz
from handfit.data import builders, example, pipeline
from handfit.models import dhpe, segmentation

# The paper's 3D PCK AUC over 20-50 mm (read off its plots; approximate, docs/datasets.md).
REFERENCE_AUC = {"rhd": 0.926, "stb": 0.995, "dexter_object": 0.65}
VARIANTS = {
    "network": "DHPE p(T), last iteration",
    "refined": "p(T) after test-time refinement (Eq. 13)",
    "baseline": "mean pose p(0) (baseline)",
}
# The networks' own 2D joints (crop pixels), scored by 2D PCK.
JOINTS2D = {
    "cpm": "CPM j2D(0)",
    "refiner": "refiner j2D(T)",
    "refined_target": "refiner after Eq. 13 (f_R at the refined p)",
}
PCK3D_RANGE_MM = (20.0, 50.0)


# ----------------------------------------------------------------------------- scoring


# The joint that a dataset's palm point (its joint 0) averages with the wrist: RHD's palm as
# hand3d defines it (data/BinaryDbReader.py: 0.5 * (wrist + middle MCP), handfit.data.rhd's
# root='palm'); STB's palm centre, the midpoint of wrist and ring MCP (the inverse of
# handfit.data.stb.palm_to_wrist).
PALM_PARTNER = {
    "rhd": skeleton.JOINT_NAMES.index("middle_mcp"),
    "stb": skeleton.JOINT_NAMES.index("ring_mcp"),
}


def palm_centre(joints: np.ndarray, dataset: str) -> np.ndarray:
    """Canonical joints ``[..., 21, 3]`` with joint 0 moved from the wrist to ``dataset``'s palm.

    The midpoint of the wrist and :data:`PALM_PARTNER` (RHD: middle MCP; STB: ring MCP).
    """
    if dataset not in PALM_PARTNER:
        raise ValueError(
            f"{dataset}: joint 0 is labelled as a palm point, but handfit knows the palm "
            f"point of {sorted(PALM_PARTNER)} only"
        )
    out = np.array(joints, np.float64, copy=True)
    out[..., 0, :] = (out[..., 0, :] + out[..., PALM_PARTNER[dataset], :]) / 2.0
    return out


def dataset_joints(
    joints3d: np.ndarray, joints2d: np.ndarray, K: np.ndarray, joint0: str, *, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """A prediction's joints as the dataset labels them: ``[B, 21, 3]``, ``[B, 21, 2]``.

    With ``joint0='palm'`` (STB; RHD read with ``root='palm'``) joint 0 becomes
    ``dataset``'s palm point (:func:`palm_centre`), in 3D and, projected with the crops'
    ``K [B, 3, 3]``, in 2D; with 'wrist' nothing changes.
    """
    if joint0 != "palm":
        return joints3d, joints2d
    joints3d = palm_centre(joints3d, dataset)
    joints2d = np.array(joints2d, copy=True)
    joints2d[:, 0] = [example.project(p, k) for p, k in zip(joints3d[:, 0], K, strict=True)]
    return joints3d, joints2d


class Pose3DScore:
    """A dataset's 3D joint score: :class:`metrics.DexterEval` for Dexter+Object, else
    :class:`metrics.PoseEval3D` under ``protocol`` with PCK over 20-50 mm.

    ``add(pred, gt, visible, examples, labelled)``: metres ``[B, 21, 3]`` and ``[B, 21]``;
    joints not ``visible`` are not scored; ``examples`` ``[B]`` names hands in errors;
    ``labelled`` ``[B, 21]``: joints with 3D ground truth (the pipeline zero-fills the others).
    The result also holds ``rotation_error``: :class:`metrics.RotationError` over the same
    joints, in the dataset's frame (before the protocol's alignment).
    """

    def __init__(self, dataset: str, *, protocol: str, steps: int):
        lo, hi = PCK3D_RANGE_MM
        self.dexter = dataset == "dexter_object"
        if self.dexter:
            self.eval = metrics.DexterEval(lo, hi, steps)
        else:
            self.eval = metrics.PoseEval3D(protocol, lo, hi, steps, dataset=dataset)
        self.rotation = metrics.RotationError()

    def add(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        visible: np.ndarray,
        examples: Sequence[str] | None = None,
        labelled: np.ndarray | None = None,
    ) -> None:
        pred = np.asarray(pred, np.float64)
        scored = np.asarray(visible, bool) & (True if labelled is None else np.asarray(labelled))
        self.rotation.add(pred, gt, scored)
        if self.dexter:
            self.eval.add(pred, np.where(np.asarray(visible)[..., None], gt, np.nan))
        else:
            self.eval.add(pred, gt, visible, examples, labelled)

    def result(self) -> dict:
        """The evaluator's result; ``auc`` is the AUC over 20-50 mm, ``pck`` its curve."""
        return self.eval.result() | {"rotation_error": self.rotation.result()}


def _render(vertices, joints, camera: render.Camera, faces) -> dict[str, jax.Array]:
    """What is scored of one variant: 3D, projected 2D and the rasterised mask at crop size."""
    return {
        "vertices": vertices,
        "joints3d": joints,
        "joints2d": render.project(joints, camera),
        "vertices2d": render.project(vertices, camera),
        "mask": render.rasterize(vertices, faces, camera).mask,
    }


def _predict(
    variables,
    images,
    K,
    *,
    model: dhpe.DHPE,
    hand: mano.HandModel,
    refine_config,
    reestimate,
    half_weight_spread=0.0,
):
    """``[B, S, S, 3], [B, 3, 3]`` -> ({variant: scored arrays}, {name: [B, 21, 2] 2D joints}).

    half_weight_spread: > 0 weighs Eq. 13's 2D joints by the CPM maps' spread
    (``refine.spread_weights``; a fraction of the crop side S), 0 weighs them all 1."""
    b, s = images.shape[0], images.shape[1]
    out = model.apply(variables, images, K, hand, train=False)
    camera = render.crop_camera(K, s)
    p0 = params.MeshParams.initial(b, hand, images.dtype).to_vector()
    base = dhpe.place(p0, hand, K, float(s))
    pred = {
        "network": _render(out.vertices[-1], out.joints3d[-1], camera, hand.faces),
        "baseline": _render(base.vertices, base.joints, camera, hand.faces),
    }
    joints2d = {"cpm": out.joints2d_cpm, "refiner": out.joints2d[-1]}
    head_mask = None
    if out.mask_logits is not None:  # f_S's P(hand) at crop size: scored, and Eq. 13's mask
        head_mask = segmentation.mask_probabilities(out.mask_logits, s)
        pred["mask_head"] = {"mask": head_mask}
    if refine_config is not None:
        # p(T) as the network placed it: from its crops' base point (params.mesh).
        start = params.MeshParams.from_vector(out.params[-1])
        weights = jnp.ones((b, skeleton.NUM_JOINTS))
        if half_weight_spread > 0:
            weights = refine.spread_weights(out.joints2d_spread, half_weight_spread * s)
        use_mask = head_mask is not None and refine_config.silhouette_target in ("auto", "mask")
        evidence = refine.Evidence(
            joints2d=out.joints2d[-1], visible=weights, mask=head_mask if use_mask else None
        )
        hooks = None
        if reestimate or refine_config.silhouette_target == "features":
            hooks = refine.dhpe_hooks(model, variables, images)
            if not reestimate:  # f_F for the 'features' term; the 2D target stays j2D(T)
                hooks = hooks._replace(refine_joints2d=None)
        crop_base = params.crop_base_translation(K, float(s))
        res = refine.refine(
            start, evidence, hand, camera, refine_config, hooks, base_translation=crop_base
        )
        pred["refined"] = _render(res.vertices, res.joints3d, camera, hand.faces)
        joints2d["refined_target"] = res.target2d
    return pred, joints2d


class _Head:
    """The first ``n`` records of a random-access source."""

    def __init__(self, source, n: int):
        self.source, self.n = source, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.source[index]


def _first(n: int, array) -> np.ndarray:
    return np.asarray(array)[:n]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` padded to ``size`` rows by repeating its last row."""
    extra = size - len(array)
    return np.concatenate([array, np.repeat(array[-1:], extra, 0)]) if extra else array


def _unmirror(points: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """``points [B, N, 3]`` with the pipeline's mirroring (``x -> -x``) applied where
    ``mirrored [B]``: at evaluation the pipeline only mirrors (left hands), it never rotates,
    so this maps between the dataset's camera frame and the crops' (both ways)."""
    points = np.asarray(points, np.float64)
    return np.stack(
        [p @ pipeline.MIRROR.T if m else p for p, m in zip(points, mirrored, strict=True)]
    )


def _gt_vertices(records: Sequence[Mapping], mirrored: np.ndarray) -> np.ndarray:
    """Ground-truth vertices ``[B, V, 3]`` of ``records``, mirrored as the pipeline did."""
    return _unmirror(np.stack([np.asarray(r["vertices"]) for r in records]), mirrored)


def image_pixels_per_crop_pixel(records: Sequence[Mapping], K_crop: np.ndarray) -> np.ndarray:
    """``[B]``: dataset-image pixels per crop pixel (the crop is a scaled, shifted window).

    ``K_crop [B, 3, 3]`` is the crop's ``crop @ K`` (mirroring keeps the focal length), so
    the ratio of focal lengths is the crop's scale. hand3d's eval2d.py scores 2D joints in
    the dataset image's pixels; distances in crop pixels times this are those.
    """
    K = np.stack([np.asarray(r["K"], np.float64) for r in records])
    return K[:, 0, 0] / np.asarray(K_crop, np.float64)[:, 0, 0]


def write_freihand_submission(
    directory: str, sample_ids: Sequence[str], joints3d: np.ndarray, vertices: np.ndarray
) -> dict:
    """Writes FreiHAND's ``pred.json`` and ``pred.zip`` (holding it) for the benchmark server.

    The format of the official toolbox's pred.py ``dump``: ``[xyz, verts]``, ``xyz`` one
    ``[21, 3]`` list per evaluation sample (FreiHAND's joint order, handfit's canonical),
    ``verts`` one ``[V, 3]`` list, in the order of the evaluation images (sorted by the
    sample ids ``evaluation/%08d``); metres in the camera frame, rounded to 1e-6 m.
    ``joints3d [N, 21, 3]``, ``vertices [N, V, 3]``. Returns what was written.
    """
    index = [int(str(s).rsplit("/", 1)[-1].split()[0]) for s in sample_ids]
    if sorted(index) != list(range(len(index))):
        raise ValueError(
            f"FreiHAND submission: the samples are not evaluation images 0..{len(index) - 1} "
            f"(first ids: {list(sample_ids)[:3]})"
        )
    order = np.argsort(index)
    pred = [np.round(np.asarray(a, np.float64)[order], 6).tolist() for a in (joints3d, vertices)]
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "pred.json")
    with open(json_path, "w") as f:
        json.dump(pred, f)
    zip_path = os.path.join(directory, "pred.zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(json_path, "pred.json")
    return {"pred_json": json_path, "zip": zip_path, "samples": len(index)}


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _evaluate_dataset(
    config: ml_collections.ConfigDict,
    name: str,
    predict,
    variables,
    hand: mano.HandModel,
    out_dir: str,
    variants: Sequence[str],
) -> dict:
    """Scores every variant on test set ``name``; writes its PCK plot and samples."""
    ev = config.eval
    source = builders.config_source(config, name, train=False)
    split_size = len(source)
    if ev.max_examples > 0 and ev.max_examples < len(source):
        source = _Head(source, ev.max_examples)
    first = source[0]
    joint0 = _text(first.get("joint0", "wrist"))
    has_vertices = "vertices" in first
    pose3d = {v: Pose3DScore(name, protocol=ev.protocol, steps=ev.pck_steps) for v in variants}
    mesh = {v: metrics.FreiHANDEval() for v in variants} if has_vertices else {}
    network2d = ["cpm", "refiner"] + (["refined_target"] if "refined" in variants else [])
    pose2d = {k: metrics.PoseEval2D() for k in network2d}
    pose2d.update({f"{v}_projected": metrics.PoseEval2D() for v in variants})
    pose2d_image = {k: metrics.PoseEval2D(frame="image") for k in pose2d}
    seg = {v: metrics.SegmentationEval() for v in variants}
    seg_head = metrics.SegmentationEval()  # the mask head f_S's own masks, when it has one
    # FreiHAND's evaluation split: the submission (refined if refinement is on, else network).
    submit = ("refined" if "refined" in variants else "network") if name == "freihand" else None
    submission: dict[str, list] = {"ids": [], "joints3d": [], "vertices": []}
    samples_dir = os.path.join(out_dir, "samples")
    os.makedirs(samples_dir, exist_ok=True)
    batches = pipeline.dataset(
        source, batch_size=ev.batch_size, train=False, **pipeline.options(config.data)
    )
    start = 0
    for batch in batches:
        m = len(batch["image"])
        images, K = (_pad(batch[k], ev.batch_size) for k in ("image", "K"))
        outputs = jax.device_get(predict(variables, images, K))
        pred, joints2d = jax.tree.map(functools.partial(_first, m), outputs)
        visible, has_mask = batch["visible"], batch["has_mask"]
        records = [source[start + i] for i in range(m)]
        ids = [_text(r["sample_id"]) for r in records]
        labelled = np.stack(
            [np.isfinite(np.asarray(r["joints3d"], float)).all(-1) for r in records]
        )
        image_px = image_pixels_per_crop_pixel(records, batch["K"])
        gt_verts = _gt_vertices(records, batch["mirrored"]) if has_vertices else None
        for v in variants:
            pred[v]["joints3d"], pred[v]["joints2d"] = dataset_joints(
                pred[v]["joints3d"], pred[v]["joints2d"], batch["K"], joint0, dataset=name
            )
            pose3d[v].add(pred[v]["joints3d"], batch["joints3d"], visible, ids, labelled)
            if has_vertices:
                mesh[v].add(pred[v]["joints3d"], batch["joints3d"], pred[v]["vertices"], gt_verts)
            for evals, scale in ((pose2d, None), (pose2d_image, image_px)):
                evals[f"{v}_projected"].add(pred[v]["joints2d"], batch["joints2d"], visible, scale)
            if has_mask.any():
                seg[v].add(pred[v]["mask"][has_mask], batch["mask"][has_mask])
        if "mask_head" in pred and has_mask.any():
            seg_head.add(pred["mask_head"]["mask"][has_mask], batch["mask"][has_mask])
        for k in network2d:
            pose2d[k].add(joints2d[k], batch["joints2d"], visible)
            pose2d_image[k].add(joints2d[k], batch["joints2d"], visible, image_px)
        if submit:
            submission["ids"] += ids
            for key in ("joints3d", "vertices"):
                submission[key].append(_unmirror(pred[submit][key], batch["mirrored"]))
        for i in range(max(0, min(m, ev.num_samples - start))):
            _write_sample(samples_dir, f"{name}_{start + i:03d}", batch, i, pred, hand, variants)
        start += m
    result = {
        "examples": start,
        "joint0": joint0,
        "pose3d": {v: pose3d[v].result() for v in variants},
        "pose2d": {k: e.result() for k, e in pose2d.items()},
        "pose2d_image": {k: e.result() for k, e in pose2d_image.items()},
    }
    nonfinite = {
        v: r["nonfinite_predictions"]
        for v, r in result["pose3d"].items()
        if r["nonfinite_predictions"]
    }
    if nonfinite:
        print(f"{name}: non-finite predicted joints, scored as misses: {nonfinite}")
    if submit:
        result["submission"] = write_freihand_submission(
            os.path.join(out_dir, "freihand_submission"),
            submission["ids"],
            np.concatenate(submission["joints3d"]),
            np.concatenate(submission["vertices"]),
        ) | {"variant": submit, "hand_model": hand.name, "complete": start == split_size}
        print(
            f"freihand: wrote {result['submission']['zip']} ({VARIANTS[submit]}, {start} of "
            f"{split_size} samples, hand model {hand.name})"
        )
    if mesh:
        result["mesh"] = {v: e.result() for v, e in mesh.items()}
    if seg[variants[0]].counts:
        result["segmentation"] = {v: e.result() for v, e in seg.items()}
    if seg_head.counts:
        result["mask_head"] = seg_head.result()
    protocol = result["pose3d"][variants[0]]["protocol"]
    viz.pck_plot_png(
        os.path.join(out_dir, f"pck_{name}.png"),
        {
            VARIANTS[v]: (r["thresholds_mm"], r["pck"], r["auc"])
            for v, r in result["pose3d"].items()
        },
        title=f"{name}: 3D PCK, protocol {protocol}; hand model {hand.name}",
        reference_auc=REFERENCE_AUC.get(name),
        reference_label="paper (Baek et al. 2019)",
    )
    return result


def _write_sample(directory, stem, batch, i, pred, hand, variants) -> None:
    """An overlay PNG per scored variant (not the baseline) and its mesh as .obj."""
    truth2d = np.where(batch["visible"][i][:, None], batch["joints2d"][i], np.nan)
    for v in variants:
        if v == "baseline":
            continue
        viz.overlay_png(
            os.path.join(directory, f"{stem}_{v}.png"),
            batch["image"][i],
            mask_pred=pred[v]["mask"][i],
            mask_true=batch["mask"][i] if batch["has_mask"][i] else None,
            joints2d_pred=pred[v]["joints2d"][i],
            joints2d_true=truth2d,
            vertices2d=pred[v]["vertices2d"][i],
            faces=np.asarray(hand.faces),
            title=f"{stem}: {VARIANTS[v]}; hand model {hand.name}",
        )
        viz.export_mesh(
            os.path.join(directory, f"{stem}_{v}.obj"), pred[v]["vertices"][i], hand.faces
        )


# ----------------------------------------------------------------------------- tables


def _table(runs: Mapping[str, dict], hand_name: str, protocol_note: str) -> str:
    """Markdown table of every run, dataset and variant."""
    lines = [
        f"Hand model: {hand_name}. 3D: {protocol_note}; AUC over 20-50 mm. "
        "Rotation: median angle between the predicted and the true hand's orientation "
        "(the rotation of their joints' best similarity), and the medians of its parts "
        "within the image and in depth (about the viewing axis; about an axis in the "
        "image plane). "
        "2D: PCK AUC over 0-30 px of the variant's projected joints. "
        "Mask: IoU of the rasterised mesh vs the ground-truth mask.",
        "",
        "| workdir | step | dataset | n | scored output | 3D protocol | AUC 20-50 mm "
        "| EPE mean mm | EPE median mm | PA-MPJPE mm | rotation ° (in image, in depth) "
        "| 2D AUC | mask IoU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    for workdir, run in runs.items():
        for name, res in run["datasets"].items():
            for v, r in res["pose3d"].items():
                iou = res.get("segmentation", {}).get(v, {}).get("iou")
                pa = res.get("mesh", {}).get(v, {}).get("pa_mpjpe_mm")
                rotation = _rotation_cell(r.get("rotation_error", {}))
                lines.append(
                    f"| {workdir} | {run['step']} | {name} | {res['examples']} | {VARIANTS[v]} "
                    f"| {r['protocol']} | {r['auc']:.3f} | {r['epe_mean_mm']:.1f} "
                    f"| {r['epe_median_mm']:.1f} | {cell(pa, '.1f')} | {rotation} "
                    f"| {res['pose2d'][f'{v}_projected']['auc']:.3f} | {cell(iou, '.3f')} |"
                )
    lines += _auc_table(
        runs, "pose2d", JOINTS2D, "2D joints of the networks, PCK AUC over 0-30 px:"
    )
    heads = [
        f"| {w} | {name} | {res['mask_head']['iou']:.3f} |"
        for w, run in runs.items()
        for name, res in run["datasets"].items()
        if "mask_head" in res
    ]
    if heads:
        lines += [
            "",
            "The mask head f_S's own masks (P(hand) > 0.5; Eq. 13 fits them), IoU vs the "
            "ground-truth mask:",
            "",
            "| workdir | dataset | mask head IoU |",
            "|---|---|---|",
            *heads,
        ]
    return "\n".join(lines) + "\n"


def _rotation_cell(rotation: Mapping) -> str:
    """'total (in image, in depth)' medians in degrees, or '-' when the run has none."""
    if rotation.get("median_deg") is None:
        return "-"
    keys = ("median_deg", "in_plane_median_deg", "out_of_plane_median_deg")
    parts = (rotation[k] for k in keys)
    return "{:.1f} ({:.1f}, {:.1f})".format(*parts)


def _auc_table(runs: Mapping[str, dict], field: str, columns: Mapping[str, str], title: str):
    """Markdown lines: ``title``, then one row per run and dataset of ``res[field][k]['auc']``."""
    lines = [
        "",
        title,
        "",
        "| workdir | dataset | " + " | ".join(columns.values()) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for workdir, run in runs.items():
        for name, res in run["datasets"].items():
            aucs = [res[field].get(k, {}).get("auc") for k in columns]
            cells = ["-" if a is None else f"{a:.3f}" for a in aucs]
            lines.append(f"| {workdir} | {name} | " + " | ".join(cells) + " |")
    return lines


def _image_2d_table(runs: Mapping[str, dict]) -> str:
    """2D PCK AUC in the dataset images' pixels: the numbers that compare with published ones."""
    columns = {
        **JOINTS2D,
        **{f"{v}_projected": f"{label} (projected)" for v, label in VARIANTS.items()},
    }
    title = (
        "2D PCK AUC over 0-30 px in the dataset image's pixels, as hand3d's eval2d.py scores "
        "(the 2D numbers above are in crop pixels):"
    )
    return "\n".join(_auc_table(runs, "pose2d_image", columns, title)) + "\n"


def _protocol_note(protocol: str) -> str:
    notes = {
        "zimmermann": "protocol 'zimmermann' (ground-truth root and reference-bone scale)",
        "mcp": "protocol 'mcp' (root at the middle MCP, ground-truth reference-bone scale)",
    }
    return notes.get(protocol, f"protocol {protocol!r}") + "; Dexter+Object: fingertip protocol"


# ----------------------------------------------------------------------------- entry points


def _refine_config(config: ml_collections.ConfigDict):
    """The refinement settings when ``config.refine.enabled``, else None."""
    if not config.refine.enabled:
        return None
    return refine.RefineConfig.from_config(config.refine)


def evaluate_workdir(
    config: ml_collections.ConfigDict, workdir: str, *, hand: mano.HandModel, predict
) -> dict:
    """One workdir's checkpoint on every test set; its report in ``<workdir>/eval/``.

    ``predict``: the jitted ``_predict`` bound to the model, hand and refinement settings.
    Returns ``{'workdir', 'step', 'report_dir', 'hand_model', 'variants', 'datasets'}``.
    """
    config_check.check_workdir(config, workdir, config_check.MODEL_FIELDS, action="evaluate")
    model = dhpe.from_config(config)
    step = None if config.eval.step < 0 else int(config.eval.step)
    variables, step = _restore(model, hand, workdir, step)
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    variants = ["network"] + (["refined"] if config.refine.enabled else []) + ["baseline"]
    run = {
        "workdir": os.fspath(workdir),
        "step": step,
        "report_dir": out_dir,
        "hand_model": hand.name,
        "variants": {v: VARIANTS[v] for v in variants},
        "datasets": {
            name: _evaluate_dataset(config, name, predict, variables, hand, out_dir, variants)
            for name in config.data.test
        },
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(_jsonable(run), f, indent=1)
    table = _table({run["workdir"]: run}, hand.name, _protocol_note(config.eval.protocol))
    table += _image_2d_table({run["workdir"]: run})
    metrics_log = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_log):  # the training run's learning curves, up to its end
        viz.learning_curves_png(
            os.path.join(out_dir, viz.CURVES_PNG),
            viz.read_metrics(metrics_log),
            f"{workdir}: learning curves; hand model {hand.name}",
        )
        table += f"\nLearning curves: ![learning curves]({viz.CURVES_PNG})\n"
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write(table)
    print(table)
    print(f"Report: {report} (pictures in {os.path.join(out_dir, 'samples')})")
    return run


class Trained(NamedTuple):
    """A trained workdir: the config it was trained with, its hand model, its DHPE, the
    variables of one checkpoint and that checkpoint's step."""

    config: ml_collections.ConfigDict
    hand: mano.HandModel
    model: dhpe.DHPE
    variables: Any
    step: int


def restore_trained(workdir: str | os.PathLike, step: int | None = None) -> Trained:
    """A trained workdir's network as its ``config.json`` says, for scripts that study it;
    the variables of checkpoint ``step`` (None: the last). Raises FileNotFoundError naming
    the file when the workdir has no ``config.json`` (``--mode=train`` writes it).
    """
    saved = config_check.saved(workdir)
    if saved is None:
        raise FileNotFoundError(
            f"{config_check.config_path(workdir)} not found: train the workdir first "
            f"(python main.py --mode=train --workdir={workdir})"
        )
    config = ml_collections.ConfigDict(saved)
    hand = mano.from_config(config)
    model = dhpe.from_config(config)
    return Trained(config, hand, model, *_restore(model, hand, workdir, step))


def _restore(model: dhpe.DHPE, hand: mano.HandModel, workdir, step: int | None):
    """(variables, step) of ``model``'s checkpoint ``step`` in ``workdir`` (None: the last)."""
    abstract = jax.eval_shape(lambda: dhpe.init(model, jax.random.key(0), hand))
    return checkpoint.restore_variables(workdir, abstract, step)


def _check_config(config: ml_collections.ConfigDict) -> None:
    """Clear errors for bad ``config.eval`` / ``config.data.test`` values, before any work."""
    ev = config.eval

    def bad(field, value, expected):
        raise ValueError(f"config.{field}={value!r}; expected {expected}")

    if ev.protocol not in metrics.PROTOCOLS:
        bad("eval.protocol", ev.protocol, f"one of {metrics.PROTOCOLS}")
    if ev.batch_size < 1:
        bad("eval.batch_size", ev.batch_size, "an integer >= 1")
    if ev.pck_steps < 2:
        bad("eval.pck_steps", ev.pck_steps, "an integer >= 2")
    tests = tuple(config.data.test)
    if not tests or any(name not in builders.TEST_SPLIT for name in tests):
        bad("data.test", tests, f"one or more of {sorted(builders.TEST_SPLIT)}")


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """``--mode=eval``: evaluates ``workdir`` (or each of ``config.eval.workdirs``).

    Returns ``{'report_dir', 'hand_model', 'protocol', 'runs': {workdir: run}}`` (a run as
    :func:`evaluate_workdir` returns it), plus ``'comparison'`` (the table's rows) when
    several workdirs are compared. Raises FileNotFoundError naming the folder when a
    workdir has no checkpoint, and when a test set is not prepared; ValueError naming the
    field for a bad ``config.eval`` or ``config.data.test`` value, ``ConfigError`` naming the
    fields when the config's model differs from the one a workdir's checkpoints were trained
    with (its ``config.json``), and ``CheckpointError`` when a checkpoint cannot be restored.
    """
    config_check.validate(config)
    _check_config(config)
    workdirs = [os.fspath(w) for w in config.eval.workdirs] or [os.fspath(workdir)]
    hand = mano.from_config(config)
    runs = {}
    for w in workdirs:
        # Compared workdirs (ablations) keep their own networks; one workdir must match.
        run_config = config_check.with_trained_model(config, w) if len(workdirs) > 1 else config
        predict = jax.jit(
            functools.partial(
                _predict,
                model=dhpe.from_config(run_config),
                refine_config=_refine_config(run_config),
                reestimate=bool(run_config.refine.reestimate_joints2d),
                half_weight_spread=float(run_config.refine.joints2d_half_weight_spread),
            )
        )
        predict = functools.partial(predict, hand=hand)  # an argument: a smaller program
        runs[w] = evaluate_workdir(run_config, w, hand=hand, predict=predict)
    report_dir = os.path.join(os.fspath(workdir), "eval")
    out = {
        "report_dir": report_dir,
        "hand_model": hand.name,
        "protocol": _protocol_note(config.eval.protocol),
        "runs": runs,
    }
    if len(workdirs) > 1:
        out["comparison"] = _compare(runs, hand.name, config.eval.protocol, report_dir)
    return out


def _compare(runs: Mapping[str, dict], hand_name: str, protocol: str, out_dir: str) -> list:
    """Writes comparison.{md,json} and a PCK plot per dataset with a curve per workdir."""
    os.makedirs(out_dir, exist_ok=True)
    table = _table(runs, hand_name, _protocol_note(protocol))
    rows = [
        {
            "workdir": w,
            "step": run["step"],
            "dataset": name,
            "variant": v,
            "protocol": r["protocol"],
            "auc_20_50": r["auc"],
            "epe_mean_mm": r["epe_mean_mm"],
            "epe_median_mm": r["epe_median_mm"],
        }
        for w, run in runs.items()
        for name, res in run["datasets"].items()
        for v, r in res["pose3d"].items()
    ]
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        json.dump({"hand_model": hand_name, "rows": rows}, f, indent=1)
    datasets = next(iter(runs.values()))["datasets"]
    for name in datasets:
        curves = {}
        for w, run in runs.items():
            res = run["datasets"][name]["pose3d"]
            v = "refined" if "refined" in res else "network"
            curves[f"{w} ({v})"] = (res[v]["thresholds_mm"], res[v]["pck"], res[v]["auc"])
        protocol_used = next(iter(datasets[name]["pose3d"].values()))["protocol"]
        viz.pck_plot_png(
            os.path.join(out_dir, f"comparison_pck_{name}.png"),
            curves,
            title=f"{name}: 3D PCK, protocol {protocol_used}; hand model {hand_name}",
            reference_auc=REFERENCE_AUC.get(name),
            reference_label="paper (Baek et al. 2019)",
        )
    print("Comparison\n" + table)
    return rows
