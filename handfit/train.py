"""Training (``--mode=train``): Eq. 7's loss, a data-parallel step, checkpoints, logs, resume.

``train_and_evaluate(config, workdir)`` prepares the configured data, trains the DHPE
(``handfit.models.dhpe``) and saves checkpoints with ``handfit.checkpoint``; rerun with
the same workdir and it resumes from the newest checkpoint.

* **Loss**: Eq. 7, ``handfit.objective.dhpe_loss``, on the DHPE's output, its
  silhouettes (``DHPE.silhouettes``) and, for Eq. 2, the features of the masked crops.
* **Step** (:func:`make_train_step`): one ``jit`` of ``shard_map`` over a 1-D mesh
  ``('data',)``; each device takes its slice of the global batch; gradients and metrics
  are ``pmean``-ed and BatchNorm statistics are averaged over the mesh
  (``bn_axis_name='data'``), so the update equals a one-device step on the whole batch
  (masked means, e.g. over visible joints, are averaged per device: exact when every
  device sees the same count). The state is donated.
* **Resume** is exact: the state, the step and, beside each checkpoint, the input
  iterator's position (``checkpoint.save_input_state``, grain's own iterator state,
  written before the checkpoint) are restored; per-step randomness is
  ``fold_in(PRNGKey(seed), step)``. On one CPU a run killed and resumed ends with the
  same parameters as an uninterrupted one.
* **Logs**: a tqdm bar (steps/s, ETA, losses), ``<workdir>/metrics.jsonl`` and TensorBoard
  event files in ``<workdir>/tensorboard`` (every term, learning rate, l2 norms of
  gradients, parameters and updates, Eq. 12's open-gate fraction); a non-finite loss
  stops the run with :class:`NonFiniteLossError` naming the step and the term(s).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from handfit import augment, checkpoint, config_check, losses, mano, objective, params, viz
from handfit.data import backgrounds, pipeline
from handfit.models import dhpe

AXIS = "data"
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
    init = jax.jit(lambda key, hand: dhpe.init(dhpe.from_config(config), key, hand))
    return functools.partial(init, hand=hand)  # the hand an argument, not a constant


# ---------------------------------------------------------------------------
# The steps


def _forward(model, variables, batch, hand, *, train, masked_pass, options, key=None, teacher=None):
    """The DHPE on the batch: ``(out, batch_stats updates, silhouettes, masked_features)``.

    teacher: ``(joints2d [B, 21, 2], mask [B, 21])``: joints f_M starts from instead of the
    CPM's where mask is True (``DHPE.__call__``'s teacher forcing); None: the CPM's.
    silhouettes: ``DHPE.silhouettes`` of the meshes the loss reads (every iteration's, or
    only the last one's with ``options.mesh_iterations='last'``; None at ``render_size`` 0);
    masked_features: f_F of the masked crops for Eq. 2 (None without ``masked_pass``).
    """
    kw = dict(mutable=["batch_stats"]) if train else {}
    rngs = {"dropout": key} if key is not None else None
    teach = {} if teacher is None else dict(zip(("teacher_joints2d", "teacher_mask"), teacher))
    result = model.apply(
        variables, batch["image"], batch["K"], hand, train=train, rngs=rngs, **kw, **teach
    )
    out, updates = result if train else (result, None)
    silhouettes = None
    if model.render_size:
        meshes = out.vertices if options.mesh_iterations == "all" else out.vertices[-1:]
        silhouettes = model.silhouettes(meshes, batch["K"], hand)
    masked = None
    if masked_pass:
        images = batch["image"] * batch["mask"][..., None]
        masked = model.apply(variables, images, train=train, method=dhpe.DHPE.features, **kw)
        masked = masked[0] if train else masked
    return out, updates, silhouettes, masked


def _generated(variables, images, K, key, *, model, hand, config, backgrounds=None):
    """Sec. 3.5's examples (``augment.Augmented``) made from the current network's hands.

    The seeds are the DHPE's last-iteration hands on ``images [B, S, S, 3]`` with ``K [B,
    3, 3]`` (eval mode, no gradient), re-rendered by :func:`handfit.augment.generate` with
    new shapes and rotations, textured from their own crops.
    """
    out = model.apply(variables, images, K, hand, train=False)
    seeds = params.MeshParams.from_vector(lax.stop_gradient(out.params[-1]))
    return augment.generate(
        seeds,
        images,
        K,
        key=key,
        model=hand,
        config=config,
        backgrounds=backgrounds,
        base_translation=params.crop_base_translation(K, images.shape[1]),
    )


def _augmented(state, batch, key, *, model, hand, config: augment.AugmentConfig):
    """The batch followed by ``per_seed`` examples made from each example's predicted hand
    (:func:`_generated`; with the batch's 'backgrounds' when it has them)."""
    batch = dict(batch)
    backgrounds = batch.pop("backgrounds", None)
    generated = _generated(
        state.variables,
        batch["image"],
        batch["K"],
        key,
        model=model,
        hand=hand,
        config=config,
        backgrounds=backgrounds,
    )
    return augment.extend(batch, generated.batch)


def teacher_fraction(step: jax.Array, start: float, until: int) -> jax.Array:
    """The share of examples taught at ``step``: ``start`` falling linearly to 0 at ``until``."""
    if until <= 0:
        return jnp.zeros((), jnp.float32)
    return start * jnp.clip(1.0 - step / until, 0.0, 1.0)


def _train_step(
    state,
    batch,
    *,
    model,
    tx,
    hand,
    faces,
    options,
    masked_pass,
    seed,
    augment_config=None,
    teacher=(0.0, 0),
):
    """One update on this device's slice of the batch, inside ``shard_map`` (axis 'data').

    With ``augment_config`` the slice is first extended by generated examples (Sec. 3.5).
    ``teacher``: (start, until) of :func:`teacher_fraction`; that share of the examples
    starts f_M from their true 2D joints (``objective.targets2d``) rather than the CPM's.
    """
    # Per-step randomness (for stochastic layers and in-step augmentation), distinct per device.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), state.step), 0)
    key = jax.random.fold_in(key, lax.axis_index(AXIS))
    if augment_config is not None:
        batch = _augmented(
            state, batch, jax.random.fold_in(key, 1), model=model, hand=hand, config=augment_config
        )
    target = objective.targets2d(batch, options)
    taught = None
    if teacher[0] > 0 and teacher[1] > 0:
        share = teacher_fraction(state.step, *teacher)
        chosen = jax.random.bernoulli(jax.random.fold_in(key, 2), share, target.scored.shape[:1])
        taught = (target.joints2d, chosen[:, None] & target.scored)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        out, updates, silhouettes, masked = _forward(
            model,
            variables,
            batch,
            hand,
            train=True,
            masked_pass=masked_pass,
            options=options,
            key=key,
            teacher=taught,
        )
        total, logs = objective.dhpe_loss(
            out=out,
            batch=batch,
            hand=hand,
            faces=faces,
            options=options,
            silhouettes=silhouettes,
            masked_features=masked,
            target=target,
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
    if taught is not None:
        logs["teacher_fraction"] = share
    logs |= module_grad_norms(grads)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, logs


# The DHPE's top-level parameter groups and the paper's names for them.
MODULES = {
    "backbone": "f_F",
    "cpm": "f_H",
    "mesh_regressor": "f_M",
    "pose_refiner": "f_R",
    "mask_head": "f_S",
}


def module_grad_norms(grads: Mapping[str, Any]) -> dict[str, jax.Array]:
    """``{'grad_norm/f_F': l2 norm, ...}`` of each of the DHPE's modules present in ``grads``."""
    return {f"grad_norm/{MODULES[k]}": optax.tree.norm(grads[k]) for k in MODULES if k in grads}


def _eval_step(state, batch, *, model, hand, faces, options, masked_pass):
    """Validation losses (eval-mode BatchNorm) on this device's slice, ``pmean``-ed."""
    out, _, silhouettes, masked = _forward(
        model,
        state.variables,
        batch,
        hand,
        train=False,
        masked_pass=masked_pass,
        options=options,
    )
    _, logs = objective.dhpe_loss(
        out=out,
        batch=batch,
        hand=hand,
        faces=faces,
        options=options,
        silhouettes=silhouettes,
        masked_features=masked,
    )
    return lax.pmean(logs, AXIS)


def _parts(config: ml_collections.ConfigDict, hand: mano.HandModel):
    """The model (BatchNorm synced over 'data'), loss options, faces and the Eq. 2 switch."""
    options = objective.LossOptions.from_config(config)
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

    ``batch`` holds ``pipeline.BATCH_KEYS`` (and 'backgrounds' [B * per_seed, S, S, 3]
    when ``augment.background_dir`` is set) as global arrays of the full batch (split over the
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
        faces=faces,
        options=options,
        seed=int(config.seed),
        augment_config=(
            augment.AugmentConfig.from_config(config.augment, config.data) if augmented else None
        ),
        teacher=(
            float(config.train.teacher_joints2d),
            int(config.train.teacher_until * config.train.steps),
        ),
    )
    return _with_hand(fn, hand, mesh, out_specs=(P(), P()), donate_argnums=0)


def _with_hand(fn, hand: mano.HandModel, mesh: Mesh, *, out_specs, **jit_kw):
    """``fn(state, batch, hand=...)`` jitted over ``mesh`` and bound to ``hand``, which the
    program takes as an argument: as a constant its arrays would be 5x the program's size
    and slow its compilation."""
    sharded = jax.shard_map(
        lambda state, batch, hand: fn(state, batch, hand=hand),
        mesh=mesh,
        in_specs=(P(), P(AXIS), P()),
        out_specs=out_specs,
    )
    step = jax.jit(sharded, **jit_kw)
    hand = jax.device_put(hand, NamedSharding(mesh, P()))
    return lambda state, batch: step(state, batch, hand)


def make_eval_step(config: ml_collections.ConfigDict, hand: mano.HandModel, mesh: Mesh):
    """``step(state, batch) -> metrics``: the validation losses, jitted and sharded."""
    model, options, faces, masked_pass = _parts(config, hand)
    fn = functools.partial(
        _eval_step,
        model=model,
        faces=faces,
        options=options,
        masked_pass=masked_pass,
    )
    return _with_hand(fn, hand, mesh, out_specs=P())


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
    keys = [k for k in (*pipeline.BATCH_KEYS, "backgrounds") if k in batch]
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in keys}


def _with_backgrounds(config: ml_collections.ConfigDict, step: int, batch: Mapping, generator):
    """``batch`` with this process's augmentation 'backgrounds' of ``step`` drawn from
    ``generator`` (``augment.background_dir``'s images; None: ``batch`` as it is, the step
    draws procedural ones).

    Drawn from a generator seeded by (seed, step, process), so a resumed run draws the same.
    """
    if generator is None:
        return batch
    local = config.train.batch_size // jax.process_count() * int(config.augment.per_seed)
    rng = np.random.default_rng([int(config.seed), step, jax.process_index()])
    drawn = backgrounds.draw(generator, rng, local, int(config.data.image_size))
    return batch | {"backgrounds": drawn}


def _write_augment_preview(
    config: ml_collections.ConfigDict, state: TrainState, batch: Mapping, workdir: str, step: int
) -> None:
    """``<workdir>/augment/preview_<step>.png``: examples the current network's hands make
    from the first (up to 4) examples of ``batch`` (``viz.augment_preview_png``)."""
    n = min(4, len(batch["image"]))
    images, K = (jnp.asarray(np.asarray(batch[k])[:n]) for k in ("image", "K"))
    key = jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), step)
    generated = _preview_fn(config.to_json())(state.variables, images, K, key)
    path = os.path.join(workdir, "augment", f"preview_{step:07d}.png")
    viz.augment_preview_png(path, np.asarray(images), jax.device_get(generated.batch))


@functools.lru_cache(maxsize=8)
def _preview_fn(config_json: str):
    """The jitted :func:`_generated` of a config (compiled once, not run op by op)."""
    config = ml_collections.ConfigDict(json.loads(config_json))
    generate = jax.jit(
        functools.partial(
            _generated,
            model=dhpe.from_config(config),
            config=augment.AugmentConfig.from_config(config.augment, config.data),
        )
    )
    return functools.partial(generate, hand=mano.from_config(config))


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


class _Steps(NamedTuple):
    """A run's compiled steps and its augmentation backgrounds."""

    train: Callable  # compiled_steps
    eval: Callable  # compiled_steps (validation losses)
    augmented: Callable | None  # augmented_step after augment.start_step; None: off
    backgrounds: Iterator | None  # augment.background_dir's images; None: procedural


def _steps(config: ml_collections.ConfigDict, mesh: Mesh) -> _Steps:
    train_step, eval_step = compiled_steps(config, mesh)
    aug = config.augment
    return _Steps(
        train=train_step,
        eval=eval_step,
        augmented=augmented_step(config, mesh) if aug.enabled else None,
        backgrounds=backgrounds.source(aug.background_dir) if aug.background_dir else None,
    )


def _training_batches(config: ml_collections.ConfigDict, source) -> Iterator:
    """This process's shard of ``source``: shuffled, augmented batches, repeated forever
    (grain's iterator: ``get_state``/``set_state`` give its position)."""
    data = pipeline.dataset(
        source,
        batch_size=config.train.batch_size // jax.process_count(),
        train=True,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        workers=config.data.workers,
        **pipeline.options(config.data),
    )
    return iter(data)


def _restore_or_create(
    config: ml_collections.ConfigDict, mesh: Mesh, workdir: str, mngr, batches
) -> tuple[TrainState, int]:
    """``(state, step)`` of the newest checkpoint that restores, with ``batches`` moved to
    its input position; the fresh state (:func:`create_state`) and 0 when there is none."""
    state = create_state(config, mesh)
    restored, start = checkpoint.restore_state(
        mngr, state, also=lambda step: batches.set_state(checkpoint.load_input_state(workdir, step))
    )
    if restored is None:
        return state, 0
    if jax.process_index() == 0:
        done = " = config.train.steps: nothing to train" if start == config.train.steps else ""
        print(f"resumed from {checkpoint.directory(workdir)} at step {start}{done}")
    return restored, start


def _record_config(config: ml_collections.ConfigDict, workdir: str, start: int) -> None:
    """Writes ``<workdir>/config.json`` (``config_check.record``), printing what a resume
    changed."""
    for path, (old, new) in config_check.record(config, workdir, start).items():
        if start:
            print(f"config changed since step {start}: {path} {old!r} -> {new!r}")


def _save(workdir: str, mngr, step: int, state: TrainState, batches) -> str:
    """Checkpoint ``step``: the input position first, then the state (host copies: the next
    step donates the device buffers). Returns the checkpoint's folder."""
    checkpoint.save_input_state(workdir, step, batches.get_state())
    host = jax.device_get(state)
    checkpoint.save(mngr, step, host, host.variables)
    return checkpoint.step_directory(workdir, step)


def _every(step: int, period: int) -> bool:
    """Whether ``step`` is a multiple of ``period`` (never for a period of 0)."""
    return bool(period) and step % period == 0


class _Monitor:
    """The host's view of the run: the progress bar, metrics.jsonl and TensorBoard.

    Each step's metrics are read one step late (:meth:`add`), so the host does not wait
    for the device. Reading checks them (:func:`check_finite`, naming
    ``last_checkpoint``) and logs them every ``train.log_every`` steps and at the last
    step, with the learning rate and the steps per second.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, start: int, enabled: bool):
        from tqdm import tqdm

        self.total = int(config.train.steps)
        self.log_every = max(int(config.train.log_every), 1)
        self.schedule = learning_rate_schedule(config)
        self.logger = _Logger(workdir, start, enabled)
        self.bar = tqdm(
            total=self.total,
            initial=start,
            disable=not (config.train.progress and enabled),
            unit="step",
            dynamic_ncols=True,
        )
        # The newest checkpoint known to hold finite values (restored or saved by this run).
        self.last_checkpoint = checkpoint.step_directory(workdir, start) if start else None
        self.pending = None  # (step, metrics still on the device)
        self.tick, self.tick_step = time.perf_counter(), start

    def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        """Takes ``step``'s metrics and reads the previous step's."""
        self.flush()
        self.pending = (step, metrics)
        self.bar.update(1)

    def flush(self) -> None:
        """Reads the pending metrics: raises :class:`NonFiniteLossError`, logs them when due."""
        if self.pending is None:
            return
        (step, metrics), self.pending = self.pending, None
        metrics = jax.device_get(metrics)
        check_finite(metrics, step, self.last_checkpoint)
        if step % self.log_every and step != self.total:
            return
        now = time.perf_counter()
        rate = (step - self.tick_step) / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, step
        rates = {"learning_rate": self.schedule(step - 1), "steps_per_s": rate}
        self.logger.write(step, dict(metrics) | rates)
        losses_now = {k: f"{float(metrics[k]):.3g}" for k in LOSS_TERMS if k in metrics}
        self.bar.set_postfix(losses_now, refresh=False)

    def validation(self, step: int, values: Mapping[str, float]) -> None:
        """Logs ``step``'s validation losses and prints their total."""
        self.logger.write(step, values)
        if self.logger.enabled:
            self.bar.write(f"step {step}: validation loss {values.get('val/total', math.nan):.4g}")

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


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
    steps = _steps(config, mesh)
    mngr = checkpoint.manager(workdir, max_to_keep=config.train.max_to_keep)
    batches = _training_batches(config, train_source)
    state, start = _restore_or_create(config, mesh, workdir, mngr, batches)
    total = int(config.train.steps)  # >= start: config_check.check_resume
    if main_process and start < total:
        _record_config(config, workdir, start)
    monitor = _Monitor(config, workdir, start, main_process)
    sharding = NamedSharding(mesh, P(AXIS))
    try:
        for step in range(start + 1, total + 1):
            augmenting = steps.augmented is not None and step > config.augment.start_step
            host_batch = next(batches)
            if augmenting:
                host_batch = _with_backgrounds(config, step, host_batch, steps.backgrounds)
                if main_process and _every(step, config.augment.preview_every):
                    _write_augment_preview(config, state, host_batch, workdir, step)
            step_fn = steps.augmented if augmenting else steps.train
            state, metrics = step_fn(state, _global_batch(host_batch, sharding))
            monitor.add(step, metrics)
            checkpointing = _every(step, config.train.checkpoint_every) or step == total
            validating = test_source is not None and _every(step, config.train.eval_every)
            if checkpointing or validating:
                monitor.flush()  # a non-finite step stops the run before anything is saved
            if checkpointing:
                monitor.last_checkpoint = _save(workdir, mngr, step, state, batches)
            if validating:
                losses_val = validation_losses(config, state, test_source, steps.eval, mesh)
                monitor.validation(step, losses_val)
            if checkpointing:
                monitor.logger.curves(f"{workdir}: hand model {hand.name}, step {step}")
        monitor.flush()
    finally:
        monitor.close()
        checkpoint.wait(mngr)
        mngr.close()
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
    test = config.data.test[0] if config.data.test else None
    test_source = builders.config_source(config, test, train=False) if test else None
    return train(config, workdir, builders.training_source(config), test_source)
