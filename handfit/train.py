"""Training (``--mode=train``): Eq. 7's loss, a data-parallel step, checkpoints, logs, resume.

``train_and_evaluate(config, workdir)`` prepares the configured data, trains the DHPE
(``handfit.models.dhpe``) and saves checkpoints with ``handfit.checkpoint``; rerun with
the same workdir and it resumes from the newest checkpoint.

* **Loss** (:func:`dhpe_loss`): Eq. 8 articulation, Eq. 9 shape with Eq. 12's per-example
  gate, the Laplacian (in the model's frame), Eq. 2 feature, Eq. 3 heat maps (every CPM
  stage), Eq. 6 refiner (summed over iterations) and the optional projection term, all
  from ``handfit.losses`` and summed by ``losses.total_loss`` with ``config.loss.weights``.
  The mesh terms use the last iteration's mesh (``config.loss.mesh_iterations='last'``,
  the paper's Eq. 7 is written on the final m) or the mean over all iterations ('all').
  3D joints count as labelled where the pipeline left them non-zero (it zeroes NaN ones).
* **Step** (:func:`make_train_step`): one ``jit`` of ``shard_map`` over a 1-D mesh
  ``('data',)``; each device takes its slice of the global batch; gradients and metrics
  are ``pmean``-ed and BatchNorm statistics are averaged over the mesh
  (``bn_axis_name='data'``), so the update equals a one-device step on the whole batch
  (masked means, e.g. over visible joints, are averaged per device: exact when every
  device sees the same count). The state is donated.
* **Resume** is exact: the state, the step and, beside each checkpoint, the input
  iterator's position (``<workdir>/input_state/<step>.p<process>.json``, grain's own
  iterator state, written before the checkpoint) are restored; per-step randomness is
  ``fold_in(PRNGKey(seed), step)``. On one CPU a run killed and resumed ends with the
  same parameters as an uninterrupted one.
* **Logs**: a tqdm bar (steps/s, ETA, losses), ``<workdir>/metrics.jsonl`` and TensorBoard
  event files in ``<workdir>/tensorboard`` (every term, learning rate, l2 norms of
  gradients, parameters and updates, Eq. 12's open-gate fraction); a non-finite loss
  stops the run with :class:`NonFiniteLossError` naming the step and the term(s).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from handfit import augment, checkpoint, config_check, losses, mano, params, render, viz
from handfit.data import backgrounds, pipeline
from handfit.models import dhpe

AXIS = "data"
# The batch fields the step reads: the pipeline's (augment.BATCH_KEYS), plus 'backgrounds'
# [B * per_seed, S, S, 3] for augmentation when augment.background_dir is set.
BATCH_KEYS = augment.BATCH_KEYS
LOSS_TERMS = (*losses.DEFAULT_WEIGHTS, "total")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the message names the step and the term(s)."""


@flax.struct.dataclass
class TrainState:
    """Everything a run resumes from.

    step: [] int32 steps taken. params, batch_stats: the DHPE's variables.
    opt_state: optax state of :func:`optimizer`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict[str, Any]:
        """``{'params', 'batch_stats'}``: what evaluation and refinement restore."""
        return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The static choices of :func:`dhpe_loss`, from ``config.loss`` and ``config.model``."""

    weights: tuple[tuple[str, float], ...] = tuple(losses.DEFAULT_WEIGHTS.items())
    tau: float = losses.DEFAULT_TAU
    constant_shape_weight: bool = False
    use_2d_losses: bool = True
    use_refiner: bool = True
    mesh_iterations: str = "last"
    laplacian_mode: str = "delta"
    heatmap_form: str = "gaussian"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> LossOptions:
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
        return cls(
            weights=tuple(sorted(weights.items())),
            tau=float(loss.tau),
            constant_shape_weight=bool(loss.constant_shape_weight),
            use_2d_losses=bool(loss.use_2d_losses),
            use_refiner=bool(config.model.use_refiner),
            mesh_iterations=loss.mesh_iterations,
            laplacian_mode=loss.laplacian_mode,
            heatmap_form=config.model.heatmap_form,
        )

    def weight(self, name: str) -> float:
        return dict(self.weights)[name]


# ---------------------------------------------------------------------------
# The loss


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
    masked_features: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 7 over one batch: the weighted sum and every term (unweighted) for logging.

    Args:
      out: the DHPE's output on ``batch['image']`` (T iterations, S CPM stages).
      batch: the input pipeline's fields: image [B, S, S, 3], mask [B, S, S],
        has_mask [B], K [B, 3, 3], joints3d [B, 21, 3], joints2d [B, 21, 2],
        visible [B, 21], heatmaps [B, 21, hs, hs] (channel-first, as the pipeline gives
        them). Eq. 8's c is 1.5 x the box of the labelled 3D joints projected with K
        (not the pipeline's norm_size, which boxes the visible joints only).
      hand: the hand model (its template and the model-frame mesh for the Laplacian).
      faces: [F, 3] the hand's faces as a concrete NumPy array (the Laplacian's table).
      options: weights and switches (:class:`LossOptions`).
      masked_features: [B, D] f_F(x * s*) for Eq. 2 (None: no feature term).
    Returns:
      ``(total, logs)``: logs has each term, 'total', 'shape_gate' (fraction of examples
      whose Eq. 12 gate is open, times has_mask) and 'render_overflow' (max over the batch).
    """
    crop = float(batch["image"].shape[1])
    visible = batch["visible"]
    labelled3d = jnp.any(batch["joints3d"] != 0, axis=-1)
    has_mask = batch["has_mask"].astype(jnp.float32)
    iters = range(out.params.shape[0]) if options.mesh_iterations == "all" else [-1]
    masks = None
    if out.silhouettes is not None:
        masks = pool_masks(batch["mask"], out.silhouettes.shape[-1])

    # Eq. 8's c from the whole labelled hand, projected: the pipeline's norm_size boxes the
    # visible joints only, a point when one joint is visible (c = 0 gives NaN).
    true2d = render.project(batch["joints3d"], dhpe.crop_camera(batch["K"], int(crop)))
    box = jnp.maximum(losses.box_size(joints2d=true2d, visible=labelled3d), 1.0)

    def mesh_terms(t):
        terms = {
            "articulation": losses.articulation_loss(
                joints3d_pred=out.joints3d[t],
                joints3d_true=batch["joints3d"],
                box_size=box,
                focal=batch["K"][:, 0, 0],
                visible=labelled3d,
            )
        }
        p = params.MeshParams.from_vector(out.params[t])
        frame = mano.forward(hand, p.pose, p.shape)  # the model's frame (losses.laplacian_loss)
        terms["laplacian"] = losses.laplacian_loss(
            vertices=frame.vertices,
            template=hand.v_template,
            faces=faces,
            mode=options.laplacian_mode,
        )
        gate = jnp.ones_like(has_mask)
        if masks is not None:
            if not options.constant_shape_weight:
                gate = losses.shape_weight(
                    joints2d_pred=out.joints2d_proj[t],
                    joints2d_true=batch["joints2d"],
                    visible=visible,
                    tau=options.tau,
                )
            terms["shape"] = losses.shape_loss(
                silhouettes=out.silhouettes[t], masks=masks, weights=gate * has_mask
            )
        if options.weight("pose_prior") > 0 and hand.joint_limits is not None:
            terms["pose_prior"] = jnp.mean(losses.joint_limit_violation(pose=p.pose, model=hand))
        if options.weight("projection") > 0:
            terms["projection"] = losses.joints2d_loss(
                joints2d_pred=out.joints2d_proj[t],
                joints2d_true=batch["joints2d"],
                visible=visible,
                crop_size=crop,
            )
        return terms, jnp.mean(gate * has_mask)

    per_iter = [mesh_terms(t) for t in iters]
    terms = {k: sum(d[k] for d, _ in per_iter) / len(per_iter) for k in per_iter[0][0]}
    gate_fraction = per_iter[-1][1]
    if options.use_2d_losses:
        terms["heatmap"] = losses.HEATMAP_FORMS[options.heatmap_form](
            heatmaps=out.heatmaps,
            targets=jnp.moveaxis(batch["heatmaps"], 1, -1),
            visible=visible,
        )
        if options.weight("keypoints") > 0:
            terms["keypoints"] = losses.joints2d_loss(
                joints2d_pred=out.joints2d_cpm,
                joints2d_true=batch["joints2d"],
                visible=visible,
                crop_size=crop,
            )
        if masked_features is not None:
            # Examples without a mask compare their features with themselves (0).
            target = jnp.where(has_mask[:, None] > 0, masked_features, out.features)
            terms["feature"] = losses.feature_loss(
                features=out.features, masked_features=lax.stop_gradient(target)
            )
    if options.use_refiner:
        terms["refiner"] = losses.refiner_loss(
            joints2d_iters=out.joints2d,
            joints2d_true=batch["joints2d"],
            visible=visible,
            crop_size=crop,
        )
    total, logs = losses.total_loss(terms=terms, weights=dict(options.weights))
    logs["shape_gate"] = gate_fraction
    logs["render_overflow"] = jnp.max(out.overflow).astype(jnp.float32)
    return total, logs


# ---------------------------------------------------------------------------
# Optimiser and state


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up over ``optim.warmup_steps``, then cosine or step decay to ``train.steps``."""
    o, steps = config.optim, int(config.train.steps)
    warmup = min(int(o.warmup_steps), max(steps - 1, 0))
    if o.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=o.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(steps, warmup + 1),
            end_value=o.learning_rate * o.end_factor,
        )
    if o.schedule == "step":
        boundaries = {int(b * steps): o.step_factor for b in o.step_boundaries}
        decay = optax.piecewise_constant_schedule(o.learning_rate, boundaries)
        ramp = optax.linear_schedule(0.0, o.learning_rate, max(warmup, 1))
        return optax.join_schedules([ramp, decay], [warmup]) if warmup else decay
    raise ValueError(f"config.optim.schedule={o.schedule!r}; expected 'cosine' or 'step'")


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping (``optim.grad_clip``), then AdamW with the schedule."""
    o = config.optim
    adam = optax.adamw(learning_rate_schedule(config), weight_decay=o.weight_decay)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip else adam


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh ``('data',)`` over ``devices`` (default: all), with an Auto axis."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def create_state(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """The fresh state (``config.seed``), replicated over ``mesh``."""
    variables = _init_fn(config.to_json())(jax.random.PRNGKey(config.seed))
    if config.model.pretrained:
        from handfit.models import resnet

        variables = resnet.load_torchvision_weights(config.model.pretrained, variables)
    tx = optimizer(config)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(variables["params"]),
    )
    return jax.device_put(state, NamedSharding(mesh, P()))


@functools.lru_cache(maxsize=8)
def _init_fn(config_json: str):
    """The jitted initialiser of a config's DHPE (cached: tests and resumes reuse it)."""
    config = ml_collections.ConfigDict(json.loads(config_json))
    hand = mano.from_config(config)
    model = dhpe.from_config(config).clone(render_size=0)  # the renderer has no weights
    return jax.jit(lambda key: dhpe.init(model, key, hand))


# ---------------------------------------------------------------------------
# The steps


def _forward(model, variables, batch, hand, *, train, masked_pass, key=None):
    """The DHPE on the batch and, for Eq. 2, f_F of the masked images."""
    kw = dict(mutable=["batch_stats"]) if train else {}
    rngs = {"dropout": key} if key is not None else None
    result = model.apply(variables, batch["image"], batch["K"], hand, train=train, rngs=rngs, **kw)
    out, updates = result if train else (result, None)
    masked = None
    if masked_pass:
        images = batch["image"] * batch["mask"][..., None]
        masked = model.apply(variables, images, train=train, method=dhpe.DHPE.features, **kw)
        masked = masked[0] if train else masked
    return out, updates, masked


def _augmented(state, batch, key, *, model, hand, config: augment.AugmentConfig):
    """The batch followed by ``per_seed`` examples made from each example's predicted hand.

    Sec. 3.5: the seeds are the current network's last-iteration hands (eval mode, no
    gradient), re-rendered by :func:`handfit.augment.generate` with new shapes and
    rotations, textured from their own crops.
    """
    batch = dict(batch)
    bgs = batch.pop("backgrounds", None)
    seeder = model.clone(render_size=0)  # the seeds' silhouettes are not needed
    out = seeder.apply(state.variables, batch["image"], batch["K"], hand, train=False)
    seeds = params.MeshParams.from_vector(lax.stop_gradient(out.params[-1]))
    size = batch["image"].shape[1]
    generated = augment.generate(
        seeds,
        batch["image"],
        batch["K"],
        key=key,
        model=hand,
        config=config,
        backgrounds=bgs,
        base_translation=dhpe.base_translation(batch["K"], size),
    )
    return augment.extend(batch, generated.batch)


def _train_step(
    state, batch, *, model, tx, hand, faces, options, masked_pass, seed, augment_config=None
):
    """One update on this device's slice of the batch, inside ``shard_map`` (axis 'data').

    With ``augment_config`` the slice is first extended by generated examples (Sec. 3.5).
    """
    # Per-step randomness (for stochastic layers and in-step augmentation), distinct per device.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), state.step), 0)
    key = jax.random.fold_in(key, lax.axis_index(AXIS))
    if augment_config is not None:
        batch = _augmented(
            state, batch, jax.random.fold_in(key, 1), model=model, hand=hand, config=augment_config
        )

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        out, updates, masked = _forward(
            model, variables, batch, hand, train=True, masked_pass=masked_pass, key=key
        )
        total, logs = dhpe_loss(
            out=out, batch=batch, hand=hand, faces=faces, options=options, masked_features=masked
        )
        return total, (logs, updates["batch_stats"])

    # Differentiate with respect to this device's (varying) copy of the weights: the gradient
    # of the replicated weights would already be the psum over devices.
    local = lax.pcast(state.params, AXIS, to="varying")
    (_, (logs, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(local)
    grads = lax.pmean(grads, AXIS)
    logs = lax.pmean(logs, AXIS)
    batch_stats = lax.pmean(batch_stats, AXIS)  # already equal (synced BatchNorm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    logs |= {
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
        "update_norm": optax.tree.norm(updates),
    }
    logs |= module_grad_norms(grads)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, logs


# The DHPE's top-level parameter groups and the paper's names for them.
MODULES = {"backbone": "f_F", "cpm": "f_H", "mesh_regressor": "f_M", "pose_refiner": "f_R"}


def module_grad_norms(grads: Mapping[str, Any]) -> dict[str, jax.Array]:
    """``{'grad_norm/f_F': l2 norm, ...}`` of each of the DHPE's modules present in ``grads``."""
    return {f"grad_norm/{MODULES[k]}": optax.tree.norm(grads[k]) for k in MODULES if k in grads}


def _eval_step(state, batch, *, model, hand, faces, options, masked_pass):
    """Validation losses (eval-mode BatchNorm) on this device's slice, ``pmean``-ed."""
    out, _, masked = _forward(
        model, state.variables, batch, hand, train=False, masked_pass=masked_pass
    )
    _, logs = dhpe_loss(
        out=out, batch=batch, hand=hand, faces=faces, options=options, masked_features=masked
    )
    return lax.pmean(logs, AXIS)


def _parts(config: ml_collections.ConfigDict, hand: mano.HandModel):
    """The model (BatchNorm synced over 'data'), loss options, faces and the Eq. 2 switch."""
    options = LossOptions.from_config(config)
    masked_pass = options.use_2d_losses and options.weight("feature") > 0
    model = dhpe.from_config(config, bn_axis_name=AXIS)
    return model, options, np.asarray(hand.faces), masked_pass


def make_train_step(
    config: ml_collections.ConfigDict,
    hand: mano.HandModel,
    mesh: Mesh,
    *,
    augmented: bool = False,
):
    """``step(state, batch) -> (state, metrics)``: jitted, sharded over ``mesh``, state donated.

    ``batch`` holds :data:`BATCH_KEYS` as global arrays of the full batch (split over the
    mesh's 'data' axis); ``metrics`` are scalars averaged over the devices. ``augmented``:
    each device's slice is extended by ``config.augment.per_seed`` generated examples per
    example before the loss (:func:`_augmented`).
    """
    model, options, faces, masked_pass = _parts(config, hand)
    fn = functools.partial(
        _train_step,
        model=model,
        masked_pass=masked_pass,
        tx=optimizer(config),
        hand=hand,
        faces=faces,
        options=options,
        seed=int(config.seed),
        augment_config=(
            augment.AugmentConfig.from_config(config.augment, config.data) if augmented else None
        ),
    )
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(sharded, donate_argnums=0)


def make_eval_step(config: ml_collections.ConfigDict, hand: mano.HandModel, mesh: Mesh):
    """``step(state, batch) -> metrics``: the validation losses, jitted and sharded."""
    model, options, faces, masked_pass = _parts(config, hand)
    fn = functools.partial(
        _eval_step,
        model=model,
        hand=hand,
        faces=faces,
        options=options,
        masked_pass=masked_pass,
    )
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P()))


def compiled_steps(config: ml_collections.ConfigDict, mesh: Mesh) -> tuple:
    """``(train_step, eval_step)`` of :func:`make_train_step` and :func:`make_eval_step`.

    Cached per (config, devices), so a second run in one process (a resume, a test)
    reuses the compiled functions.
    """
    return _compiled(config.to_json(), tuple(mesh.devices.flat))


def augmented_step(config: ml_collections.ConfigDict, mesh: Mesh):
    """The train step with Sec. 3.5's generated examples (``make_train_step(augmented=True)``)."""
    return _compiled(config.to_json(), tuple(mesh.devices.flat), augmented=True)[0]


@functools.lru_cache(maxsize=8)
def _compiled(config_json: str, devices: tuple, augmented: bool = False) -> tuple:
    config = ml_collections.ConfigDict(json.loads(config_json))
    hand = mano.from_config(config)
    mesh = data_mesh(devices)
    return (
        make_train_step(config, hand, mesh, augmented=augmented),
        make_eval_step(config, hand, mesh),
    )


# ---------------------------------------------------------------------------
# The loop


def check_finite(metrics: Mapping[str, Any], step: int, last_checkpoint: str | None = None) -> None:
    """Raises :class:`NonFiniteLossError` naming ``step`` and every non-finite loss term
    (or, with finite losses, non-finite gradient or parameter norms).

    ``last_checkpoint``: the newest checkpoint known to hold finite values (restored or saved
    by this run), which the message names as the one to resume from.
    """
    what, bad = "loss", [k for k in LOSS_TERMS if k in metrics and not np.isfinite(metrics[k])]
    if not bad:
        norms = ("grad_norm", "param_norm")
        what, bad = (
            "gradients or parameters",
            [k for k in norms if k in metrics and not np.isfinite(metrics[k])],
        )
    if bad:
        values = ", ".join(f"{k}={float(metrics[k])}" for k in bad)
        resume = (
            f"lower it and rerun to resume from {last_checkpoint}, the last checkpoint saved "
            f"with finite values"
            if last_checkpoint
            else "lower it and rerun (no checkpoint was saved before this step)"
        )
        raise NonFiniteLossError(
            f"non-finite {what} at step {step}: {values}. Check the data of that step, or "
            f"the learning rate (config.optim.learning_rate): {resume}."
        )


def _global_batch(batch: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict:
    keys = [k for k in (*BATCH_KEYS, "backgrounds") if k in batch]
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in keys}


def _host_backgrounds(config: ml_collections.ConfigDict, step: int, generator) -> np.ndarray:
    """This process's augmentation backgrounds of ``step`` from ``augment.background_dir``.

    Drawn from a generator seeded by (seed, step, process), so a resumed run draws the same.
    """
    local = config.train.batch_size // jax.process_count() * int(config.augment.per_seed)
    rng = np.random.default_rng([int(config.seed), step, jax.process_index()])
    return backgrounds.draw(generator, rng, local, int(config.data.image_size))


def write_augment_preview(
    config: ml_collections.ConfigDict, state: TrainState, batch: Mapping, path: str, step: int
) -> None:
    """A grid PNG of generated examples (Sec. 3.5) from the first real examples of ``batch``.

    Row 1: the seed crops; rows below: their ``per_seed`` generated examples with the
    rendered mask's outline and the 2D joints.
    """
    hand = mano.from_config(config)
    n = min(4, len(batch["image"]))
    local = {k: jnp.asarray(np.asarray(batch[k])[:n]) for k in BATCH_KEYS}
    model = dhpe.from_config(config).clone(render_size=0)
    out = model.apply(state.variables, local["image"], local["K"], hand, train=False)
    seeds = params.MeshParams.from_vector(out.params[-1])
    size = int(config.data.image_size)
    generated = augment.generate(
        seeds,
        local["image"],
        local["K"],
        key=jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), step),
        model=hand,
        config=augment.AugmentConfig.from_config(config.augment, config.data),
        base_translation=dhpe.base_translation(local["K"], size),
    ).batch
    k = int(config.augment.per_seed)
    images = np.asarray(generated["image"]).reshape(n, k, size, size, 3)
    masks = np.asarray(generated["mask"]).reshape(n, k, size, size)
    joints = np.asarray(generated["joints2d"]).reshape(n, k, -1, 2)
    tiles = [np.asarray(local["image"])]
    for j in range(k):
        tile = images[:, j].copy()
        edge = (masks[:, j] > 0) & ~(
            (np.roll(masks[:, j], 1, 1) > 0) & (np.roll(masks[:, j], 1, 2) > 0)
        )
        tile[edge] = (0.0, 1.0, 0.0)
        for b in range(n):
            cols, rows = np.clip(joints[b, j].astype(int).T, 0, size - 1)
            tile[b, rows, cols] = (1.0, 0.0, 0.0)
        tiles.append(tile)
    grid = np.concatenate([np.concatenate(list(row), 1) for row in tiles], 0)
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(path)


def _input_state_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, "input_state", f"{step}.p{jax.process_index()}.json")


def _save_input_state(workdir: str, step: int, state: dict) -> None:
    path = _input_state_path(workdir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


def _load_input_state(workdir: str, step: int) -> dict:
    path = _input_state_path(workdir, step)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: the checkpoint of step {step} has no input-pipeline position, "
            f"so the run cannot resume exactly; delete {checkpoint.directory(workdir)} to "
            f"start over"
        )
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def _logged_step(line: str) -> float:
    """The step of a ``metrics.jsonl`` line; inf for a line cut short (a full disk, a kill)."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return math.inf


class _Logger:
    """metrics.jsonl and TensorBoard (process 0 only)."""

    def __init__(self, workdir: str, start: int, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        if os.path.exists(self.path):  # drop what a killed run logged after its checkpoint
            with open(self.path) as f:
                keep = [line for line in f if _logged_step(line) <= start]
            with open(self.path, "w") as f:
                f.writelines(keep)
        self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start + 1)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def curves(self, title: str) -> None:
        """Redraws ``<workdir>/learning_curves.png`` from ``metrics.jsonl``."""
        if self.enabled and os.path.exists(self.path):
            png = os.path.join(os.path.dirname(self.path), viz.CURVES_PNG)
            viz.learning_curves_png(png, viz.read_metrics(self.path), title)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()


def validation_losses(
    config: ml_collections.ConfigDict, state: TrainState, source, eval_step, mesh: Mesh
) -> dict[str, float]:
    """Mean validation losses over the full batches of ``source`` (``train.eval_batches``)."""
    local = config.train.batch_size // jax.process_count()
    data = pipeline.dataset(
        source,
        batch_size=local,
        train=False,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        **pipeline.options(config.data),
    )
    sharding = NamedSharding(mesh, P(AXIS))
    sums, count = {}, 0
    for batch in data:
        if len(batch["image"]) != local:
            continue  # a partial last batch would not split over the devices
        logs = jax.device_get(eval_step(state, _global_batch(batch, sharding)))
        sums = {k: sums.get(k, 0.0) + float(v) for k, v in logs.items()}
        count += 1
        if config.train.eval_batches and count >= config.train.eval_batches:
            break
    return {f"val/{k}": v / count for k, v in sums.items()} if count else {}


def _check_batch(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    b, n, hosts = config.train.batch_size, mesh.devices.size, jax.process_count()
    if b % n or b % hosts:
        raise ValueError(
            f"config.train.batch_size={b} must divide by the device count ({n}) and the "
            f"process count ({hosts}); e.g. --config.train.batch_size={max(n, hosts) * 8}"
        )


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    train_source,
    test_source=None,
    *,
    mesh: Mesh | None = None,
) -> TrainState:
    """Trains on ``train_source`` (random-access records) until ``config.train.steps``.

    Resumes from ``<workdir>/checkpoints`` when it holds a checkpoint (state and input
    position; the newest that restores, see ``checkpoint.restore_state``); saves every
    ``train.checkpoint_every`` steps and at the end; validates on ``test_source`` every
    ``train.eval_every`` steps. Returns the final state.

    Raises ``config_check.ConfigError`` before building anything when a field is out of
    range, when a resume would change the model (``config_check.RESUME_FIELDS``, against
    ``<workdir>/config.json``), or when ``train.steps`` is below the newest checkpoint's
    step. ``config.json`` is written once the checkpoint (if any) is restored, when there
    are steps to train; a changed predecessor is kept (``config_check.record``).
    """
    workdir = os.path.abspath(workdir)
    config_check.check_resume(config, workdir)
    mesh = data_mesh() if mesh is None else mesh
    _check_batch(config, mesh)
    hand = mano.from_config(config)
    main_process = jax.process_index() == 0
    if main_process:
        platform = jax.devices()[0].platform
        print(f"hand model: {hand.name}; devices: {mesh.devices.size} ({platform})")
    train_step, eval_step = compiled_steps(config, mesh)
    aug = config.augment
    aug_step = augmented_step(config, mesh) if aug.enabled else None
    aug_backgrounds = backgrounds.source(aug.background_dir) if aug.background_dir else None

    state = create_state(config, mesh)
    mngr = checkpoint.manager(workdir, max_to_keep=config.train.max_to_keep)
    data = pipeline.dataset(
        train_source,
        batch_size=config.train.batch_size // jax.process_count(),
        train=True,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        workers=config.data.workers,
        **pipeline.options(config.data),
    )
    batches: Iterator = iter(data)
    restored, start = checkpoint.restore_state(
        mngr, state, also=lambda step: batches.set_state(_load_input_state(workdir, step))
    )
    total = int(config.train.steps)  # >= start: config_check.check_resume
    last_checkpoint = None
    if restored is not None:
        state = restored
        last_checkpoint = os.path.join(checkpoint.directory(workdir), str(start))
        if main_process:
            done = " = config.train.steps: nothing to train" if start == total else ""
            print(f"resumed from {checkpoint.directory(workdir)} at step {start}{done}")
    if main_process and start < total:
        for path, (old, new) in config_check.record(config, workdir, start).items():
            if start:
                print(f"config changed since step {start}: {path} {old!r} -> {new!r}")
    log_every = max(int(config.train.log_every), 1)
    logger = _Logger(workdir, start, main_process)
    schedule = learning_rate_schedule(config)
    sharding = NamedSharding(mesh, P(AXIS))
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=start,
        disable=not (config.train.progress and main_process),
        unit="step",
        dynamic_ncols=True,
    )

    def save(step):
        nonlocal last_checkpoint
        _save_input_state(workdir, step, batches.get_state())
        host = jax.device_get(state)  # the next step donates the device buffers
        checkpoint.save(mngr, step, host, host.variables)
        last_checkpoint = os.path.join(checkpoint.directory(workdir), str(step))

    pending = None  # (step, metrics) of the previous step, read after the next is dispatched
    tick, tick_step = time.perf_counter(), start

    def finish(step_metrics):
        nonlocal tick, tick_step
        step, metrics = step_metrics
        metrics = jax.device_get(metrics)
        check_finite(metrics, step, last_checkpoint)
        if step % log_every == 0 or step == total:
            now = time.perf_counter()
            rate = (step - tick_step) / max(now - tick, 1e-9)
            tick, tick_step = now, step
            values = dict(metrics) | {"learning_rate": schedule(step - 1), "steps_per_s": rate}
            logger.write(step, values)
            bar.set_postfix(
                {k: f"{float(metrics[k]):.3g}" for k in LOSS_TERMS if k in metrics}, refresh=False
            )

    try:
        for step in range(start + 1, total + 1):
            host_batch = next(batches)
            step_fn = train_step
            if aug_step is not None and step > aug.start_step:
                step_fn = aug_step
                if aug_backgrounds is not None:
                    host_batch = host_batch | {
                        "backgrounds": _host_backgrounds(config, step, aug_backgrounds)
                    }
                if main_process and aug.preview_every and step % aug.preview_every == 0:
                    path = os.path.join(workdir, "augment", f"preview_{step:07d}.png")
                    write_augment_preview(config, state, host_batch, path, step)
            batch = _global_batch(host_batch, sharding)
            state, metrics = step_fn(state, batch)
            if pending is not None:
                finish(pending)
            pending = (step, metrics)
            bar.update(1)
            ckpt = step % config.train.checkpoint_every == 0 or step == total
            val = test_source is not None and config.train.eval_every
            val = val and step % config.train.eval_every == 0
            if ckpt or val:
                finish(pending)
                pending = None
            if ckpt:
                save(step)
            if val:
                values = validation_losses(config, state, test_source, eval_step, mesh)
                logger.write(step, values)
                if main_process:
                    loss = values.get("val/total", math.nan)
                    bar.write(f"step {step}: validation loss {loss:.4g}")
            if ckpt:
                logger.curves(f"{workdir}: hand model {hand.name}, step {step}")
        if pending is not None:
            finish(pending)
    finally:
        bar.close()
        checkpoint.wait(mngr)
        mngr.close()
        logger.close()
    return state


def initialize_distributed() -> None:
    """``jax.distributed.initialize()`` for ``config.train.distributed`` (one process per host).

    Under SLURM, Open MPI (``mpirun``), Kubernetes or on Cloud TPU, jax finds everything
    itself. Elsewhere set, for every process, ``JAX_COORDINATOR_ADDRESS`` (host:port of
    process 0, which jax reads), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (0 to n - 1,
    which this passes on). CPUs exchange gradients through gloo, jax's default.
    """
    given = {k: os.environ.get(k) for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
    if not all(v is None or v.isdigit() for v in given.values()):
        raise config_check.ConfigError(f"{given}: expected whole numbers (environment)")
    count, index = (None if v is None else int(v) for v in given.values())
    jax.distributed.initialize(num_processes=count, process_id=index)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """``--mode=train``: check the config, prepare its data, train, save (:func:`train`).

    Raises ``config_check.ConfigError`` (a field out of range, a resume that changes the
    model) before preparing anything, and ``DatasetNotFoundError`` with the datasets' own
    instructions when a dataset is missing.
    """
    from handfit.data import builders

    config_check.check_resume(config, workdir)
    if not config.data.train:
        raise config_check.ConfigError("config.data.train=(); expected the datasets to train on")
    if config.train.distributed:
        initialize_distributed()
    os.makedirs(workdir, exist_ok=True)
    builders.prepare_config(config)
    train_sources = [builders.config_source(config, n, train=True) for n in config.data.train]
    test = config.data.test[0] if config.data.test else None
    test_source = builders.config_source(config, test, train=False) if test else None
    return train(config, workdir, _concat(train_sources), test_source)


class _Concat:
    """Random access over several sources, one after the other (the training mix)."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        i = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[i][index - int(self.offsets[i])]


def _concat(sources):
    return sources[0] if len(sources) == 1 else _Concat(sources)
