"""Eq. 7's training objective of the DHPE: every term of one batch, weighted and summed.

:func:`dhpe_loss` assembles the terms of ``handfit.losses`` from a ``DHPEOutput``, the
input pipeline's batch and the silhouettes ``DHPE.silhouettes`` rendered: Eq. 8
articulation, Eq. 9 shape with Eq. 12's per-example gate, the Laplacian (in the model's
frame), Eq. 2 feature, Eq. 3 heat maps (every CPM stage), Eq. 6 refiner (summed over
iterations) and the optional keypoint, projection, pose-prior and rotation-aligned Eq. 8
terms, summed by ``losses.total_loss`` with ``config.loss.weights``. The mesh terms use the last
iteration's mesh (``config.loss.mesh_iterations='last'``, the paper's Eq. 7 is written on
the final m) or the mean over all iterations ('all'). 3D joints count as labelled where
the pipeline left them non-zero (it zeroes NaN ones).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from handfit import defaults, losses, mano, params, render
from handfit.data import pipeline
from handfit.models import dhpe

LOSS, MODEL, DATA = defaults.section("loss"), defaults.section("model"), defaults.section("data")


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The static choices of :func:`dhpe_loss`: ``config.loss``'s fields, ``use_refiner`` and
    ``heatmap_form`` of ``config.model``, ``crop_scale`` (Eq. 8's c over the joints' box side)
    and ``heatmap_sigma`` of ``config.data``; each default is configs/default.py's
    (``handfit.defaults``)."""

    weights: tuple[tuple[str, float], ...] = tuple(losses.DEFAULT_WEIGHTS.items())
    tau: float = LOSS.tau
    constant_shape_weight: bool = LOSS.constant_shape_weight
    use_2d_losses: bool = LOSS.use_2d_losses
    use_refiner: bool = MODEL.use_refiner
    mesh_iterations: str = LOSS.mesh_iterations
    laplacian_mode: str = LOSS.laplacian_mode
    supervise_occluded: bool = LOSS.supervise_occluded
    heatmap_form: str = MODEL.heatmap_form
    crop_scale: float = DATA.crop_scale
    heatmap_sigma: float = DATA.heatmap_sigma

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> LossOptions:
        """From ``config.loss``, ``config.model`` and ``config.data``; ``loss.weights`` may
        name a subset of the terms (the others keep their defaults)."""
        loss = config.loss
        if loss.mesh_iterations not in ("last", "all"):
            raise ValueError(
                f"config.loss.mesh_iterations={loss.mesh_iterations!r}; expected 'last' or 'all'"
            )
        unknown = sorted(set(loss.weights) - set(losses.DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(
                f"config.loss.weights has unknown terms {unknown}; "
                f"known: {sorted(losses.DEFAULT_WEIGHTS)}"
            )
        weights = dict(losses.DEFAULT_WEIGHTS) | {k: float(v) for k, v in loss.weights.items()}
        weights = {"weights": tuple(sorted(weights.items()))}
        return defaults.build(cls, weights, loss, config.model, config.data)

    def weight(self, name: str) -> float:
        return dict(self.weights)[name]


def pool_masks(masks: jax.Array, size: int) -> jax.Array:
    """Ground-truth masks ``[B, S, S]`` averaged down to ``[B, size, size]`` (S a multiple)."""
    s = masks.shape[-1]
    if s % size:
        raise ValueError(
            f"mask side {s} is not a multiple of config.model.render_size={size}: choose a "
            f"render_size that divides data.image_size"
        )
    f = s // size
    return masks.reshape(masks.shape[0], size, f, size, f).mean(axis=(2, 4))


def dhpe_loss(
    *,
    out: dhpe.DHPEOutput,
    batch: Mapping[str, jax.Array],
    hand: mano.HandModel,
    faces: np.ndarray,
    options: LossOptions,
    silhouettes: render.SoftSilhouette | None = None,
    masked_features: jax.Array | None = None,
    target: Targets2D | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 7 over one batch: the weighted sum and every term (unweighted) for logging.

    Args:
      out: the DHPE's output on ``batch['image']`` (T iterations, S CPM stages).
      batch: the input pipeline's fields: image [B, S, S, 3], mask [B, S, S],
        has_mask [B], K [B, 3, 3], joints3d [B, 21, 3], joints2d [B, 21, 2],
        visible [B, 21], heatmaps [B, 21, hs, hs] (channel-first, as the pipeline gives
        them).
      hand: the hand model (its template for the Laplacian, its joint limits).
      faces: [F, 3] the hand's faces as a concrete NumPy array (the Laplacian's table).
      options: weights and switches (:class:`LossOptions`).
      silhouettes: ``DHPE.silhouettes`` of ``out.vertices`` (of ``out.vertices[-1:]`` is
        enough with ``options.mesh_iterations='last'``): silhouette [T, B, R, R] and
        overflow [T, B] (None: no shape term, Eq. 9).
      masked_features: [B, D] f_F(x * s*) for Eq. 2 (None: no feature term).
      target: :func:`targets2d` of ``batch`` when the caller has it (None: computed here).
    Returns:
      ``(total, logs)``: logs has each term, 'total', 'shape_gate' (fraction of examples
      whose Eq. 12 gate is open, times has_mask) and 'render_overflow' (max over the batch).
    """
    iters = range(out.params.shape[0]) if options.mesh_iterations == "all" else [-1]
    masks = None
    if silhouettes is not None:
        rendered, needed = silhouettes.silhouette.shape[0], len(iters)
        if rendered < needed:
            raise ValueError(
                f"dhpe_loss: mesh_iterations={options.mesh_iterations!r} needs silhouettes of "
                f"{needed} iterations, got {rendered}"
            )
        masks = pool_masks(batch["mask"], silhouettes.silhouette.shape[-1])
    box = articulation_box(batch, options.crop_scale)
    target = targets2d(batch, options) if target is None else target
    per_iter = [
        _mesh_terms(
            out,
            t,
            batch,
            hand=hand,
            faces=faces,
            options=options,
            box=box,
            target=target,
            masks=masks,
            silhouette=None if silhouettes is None else silhouettes.silhouette[t],
        )
        for t in iters
    ]
    terms = {k: sum(d[k] for d, _ in per_iter) / len(per_iter) for k in per_iter[0][0]}
    if options.use_2d_losses:
        terms |= _image_terms(
            out, batch, options=options, target=target, masked_features=masked_features
        )
    if out.mask_logits is not None:
        terms["mask"] = losses.mask_loss(
            logits=out.mask_logits,
            masks=pool_masks(batch["mask"], out.mask_logits.shape[-1]),
            has_mask=batch["has_mask"],
        )
    if options.use_refiner:
        terms["refiner"] = losses.refiner_loss(
            joints2d_iters=out.joints2d,
            joints2d_true=target.joints2d,
            visible=target.scored,
            crop_size=float(batch["image"].shape[1]),
        )
    total, logs = losses.total_loss(terms=terms, weights=dict(options.weights))
    logs["shape_gate"] = per_iter[-1][1]
    overflow = 0 if silhouettes is None else jnp.max(silhouettes.overflow)
    logs["render_overflow"] = jnp.asarray(overflow, jnp.float32)
    return total, logs


class Targets2D(NamedTuple):
    """What the 2D terms compare with: joints2d [B, 21, 2] crop pixels (0 where not
    ``scored``), scored [B, 21] bool, heatmaps [B, hs, hs, 21] (channels last)."""

    joints2d: jax.Array
    scored: jax.Array
    heatmaps: jax.Array


def targets2d(batch: Mapping[str, jax.Array], options: LossOptions) -> Targets2D:
    """The 2D terms' targets: the pipeline's visible joints and their heat maps, or with
    ``options.supervise_occluded`` also the labelled occluded joints that fall inside the crop,
    at their 3D joint projected with the crop's K, with heat maps drawn for them
    (``pipeline.heatmaps``)."""
    maps = jnp.moveaxis(batch["heatmaps"], 1, -1)
    visible = batch["visible"]
    if not options.supervise_occluded:
        return Targets2D(batch["joints2d"], visible, maps)
    size = batch["image"].shape[1]
    projected = render.project(batch["joints3d"], render.crop_camera(batch["K"], size))
    # Occluded joints outside the crop are not scored: the maps do not reach them, and a crop
    # around few visible joints can put the others thousands of pixels away.
    inside = jnp.all((projected >= 0) & (projected <= size), axis=-1)
    scored = visible | (_labelled3d(batch) & inside)
    joints = jnp.where(visible[..., None], batch["joints2d"], projected)
    joints = jnp.where(scored[..., None], joints, 0.0)
    draw = functools.partial(
        pipeline.heatmaps,
        image_size=size,
        heatmap_size=maps.shape[1],
        sigma=options.heatmap_sigma,
        xp=jnp,
    )
    return Targets2D(joints, scored, jnp.moveaxis(jax.vmap(draw)(joints, scored), 1, -1))


def _labelled3d(batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B, 21] the 3D joints that count as labelled: the non-zero ones (the pipeline zeroes
    NaN joints)."""
    return jnp.any(batch["joints3d"] != 0, axis=-1)


def articulation_box(batch: Mapping[str, jax.Array], crop_scale: float) -> jax.Array:
    """Eq. 8's c [B]: ``crop_scale`` x the box of the labelled 3D joints projected with K
    (at least 1 pixel).

    handfit boxes the whole labelled hand, not the pipeline's norm_size, which boxes the
    visible joints only: a point when one joint is visible (c = 0 gives NaN).
    """
    camera = render.crop_camera(batch["K"], batch["image"].shape[1])
    true2d = render.project(batch["joints3d"], camera)
    box = losses.box_size(joints2d=true2d, visible=_labelled3d(batch), crop_scale=crop_scale)
    return jnp.maximum(box, 1.0)


def _mesh_terms(
    out: dhpe.DHPEOutput,
    t: int,
    batch: Mapping[str, jax.Array],
    *,
    hand: mano.HandModel,
    faces: np.ndarray,
    options: LossOptions,
    box: jax.Array,
    target: Targets2D,
    silhouette: jax.Array | None,
    masks: jax.Array | None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """The terms on iteration ``t``'s mesh p(t): Eq. 8 articulation, the Laplacian, Eq. 9
    shape with Eq. 12's gate (with ``silhouette`` [B, R, R] and ``masks`` [B, R, R]), and
    the optional aligned articulation, pose prior and projection.

    Returns ``(terms, gate)``: gate is the fraction of examples whose Eq. 12 gate is open,
    times has_mask (1 x has_mask without a silhouette).
    """
    crop = float(batch["image"].shape[1])
    has_mask = batch["has_mask"].astype(jnp.float32)
    joints3d = dict(
        joints3d_pred=out.joints3d[t],
        joints3d_true=batch["joints3d"],
        box_size=box,
        focal=batch["K"][:, 0, 0],
        visible=_labelled3d(batch),
    )
    terms = {"articulation": losses.articulation_loss(**joints3d)}
    if options.weight("aligned_articulation") > 0:
        terms["aligned_articulation"] = losses.aligned_articulation_loss(**joints3d)
    terms["laplacian"] = losses.laplacian_loss(
        vertices=out.model_vertices[t],  # the model's frame (losses.laplacian_loss)
        template=hand.v_template,
        faces=faces,
        mode=options.laplacian_mode,
    )
    gate = jnp.ones_like(has_mask)
    if silhouette is not None:
        if not options.constant_shape_weight:
            gate = losses.shape_weight(
                joints2d_pred=out.joints2d_proj[t],
                joints2d_true=target.joints2d,
                visible=target.scored,
                tau=options.tau,
            )
        terms["shape"] = losses.shape_loss(
            silhouettes=silhouette, masks=masks, weights=gate * has_mask
        )
    if options.weight("pose_prior") > 0 and hand.joint_limits is not None:
        pose = params.MeshParams.from_vector(out.params[t]).pose
        terms["pose_prior"] = jnp.mean(losses.joint_limit_violation(pose=pose, model=hand))
    if options.weight("projection") > 0:
        terms["projection"] = losses.joints2d_loss(
            joints2d_pred=out.joints2d_proj[t],
            joints2d_true=target.joints2d,
            visible=target.scored,
            crop_size=crop,
        )
    return terms, jnp.mean(gate * has_mask)


def _image_terms(
    out: dhpe.DHPEOutput,
    batch: Mapping[str, jax.Array],
    *,
    options: LossOptions,
    target: Targets2D,
    masked_features: jax.Array | None,
) -> dict[str, jax.Array]:
    """The 2D terms (``loss.use_2d_losses``): Eq. 3 heat maps (every CPM stage), the optional
    CPM keypoints, and Eq. 2 feature (with ``masked_features``)."""
    terms = {
        "heatmap": losses.HEATMAP_FORMS[options.heatmap_form](
            heatmaps=out.heatmaps, targets=target.heatmaps, visible=target.scored
        )
    }
    if options.weight("keypoints") > 0:
        terms["keypoints"] = losses.joints2d_loss(
            joints2d_pred=out.joints2d_cpm,
            joints2d_true=target.joints2d,
            visible=target.scored,
            crop_size=float(batch["image"].shape[1]),
        )
    if masked_features is not None:
        # Examples without a mask compare their features with themselves (0).
        has_mask = batch["has_mask"].astype(jnp.float32)
        target = jnp.where(has_mask[:, None] > 0, masked_features, out.features)
        terms["feature"] = losses.feature_loss(
            features=out.features, masked_features=lax.stop_gradient(target)
        )
    return terms
