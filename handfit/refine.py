"""Test-time refinement (paper Eq. 13) and fitting of the hand model to 2D joints and masks.

``refine`` runs N gradient steps on the 63 parameters inside one jitted ``lax.fori_loop``
(the optax state in the carry; nothing returns to Python between steps). ``fit`` needs no
network: a coarse weak-perspective alignment of the model's mean-pose joints to the 2D
joints over a few start rotations, then ``refine``.

Batches: every leading dimension B is a batch of independent hands. The objective that is
differentiated is the *sum* of the per-example losses, so each example's gradient is its
own loss's gradient (what ``vmap`` of a per-example refinement would give) and SGD and
Adam, which act elementwise, update each example independently.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from handfit import defaults, losses, mano, metrics, params, render, skeleton
from handfit.params import MeshParams
from handfit.render.camera import Camera, batch_camera

GROUPS = tuple(name for name, _ in params.SIZES)  # pose, shape, quat, scale, trans
SILHOUETTE_TARGETS = ("auto", "initial", "mask", "features")
OPTIMIZERS = ("sgd", "adam")
# configs/default.py's refine section: RefineConfig's defaults and the command line's fields.
REFINE = defaults.section("refine")


class Evidence(NamedTuple):
    """What the hand is fitted to.

    joints2d: [B, 21, 2] pixels of the camera's image (canonical order, ``handfit.skeleton``).
    visible: [B, 21] 1 where the joint is known, 0 to ignore it (also for ``world``); a
      value between weighs the joint's 2D term (e.g. :func:`spread_weights`).
    mask: [B, H, W] foreground in [0, 1] at the camera's (H, W), or None.
    world: [B, 21, 3] metric 3D joints around the hand's centre in the camera's axes
      (x right, y down, z forward), e.g. a detector's world landmarks, or None. Their
      positions relative to their centroid and their bone directions are fitted (the
      ``world_joints`` and ``world_bones`` terms): metric relative 3D evidence that fixes
      the hand's size and so its depth, which 2D joints alone leave ambiguous.
    """

    joints2d: jnp.ndarray
    visible: jnp.ndarray
    mask: jnp.ndarray | None = None
    world: jnp.ndarray | None = None


def spread_weights(spread: jnp.ndarray, half_weight_spread: float) -> jnp.ndarray:
    """Joint weights for ``Evidence.visible`` from the 2D joints' uncertainty.

    Args:
      spread: [B, 21] each joint's spread, pixels (``DHPEOutput.joints2d_spread``).
      half_weight_spread: the spread at which a joint weighs 1/2, same pixels (> 0).
    Returns:
      [B, 21] ``h^2 / (h^2 + spread^2)``: 1 for a sharp heat map, towards 0 for a flat one.
    """
    if not half_weight_spread > 0:
        raise ValueError(
            f"spread_weights: half_weight_spread must be > 0, got {half_weight_spread}"
        )
    h2 = jnp.square(half_weight_spread)
    return h2 / (h2 + jnp.square(spread))


class DHPEHooks(NamedTuple):
    """What refine needs from a trained DHPE, closed over its variables and the images."""

    # (params_vec [B,63], joints3d [B,21,3] camera space, joints2d [B,21,2] crop px)
    # -> [B,21,2]: f_R
    refine_joints2d: Callable | None
    # (images [B,H,W,3] in [0,1]) -> [B,D]: f_F (pooled ResNet feature)
    features: Callable | None
    # [B,H,W,3] the crops the evidence refers to (for the 'features' term)
    images: jnp.ndarray | None


@dataclasses.dataclass(frozen=True)
class _Hook:
    """A DHPE method as a module-level callable (hashable, equal for equal models), bound to
    its arrays by ``jax.tree_util.Partial`` so that a hook is a pytree."""

    model: nn.Module  # a handfit.models.dhpe.DHPE
    method: str  # 'features' or 'refine_joints2d'

    def __call__(self, variables, *args):
        if self.method == "features":
            (images,) = args
            return self.model.apply(variables, images, train=False, method="features")
        features, p, joints3d, joints2d = args
        return self.model.apply(
            variables, p, features, joints3d, joints2d, method="refine_joints2d"
        )


def dhpe_hooks(model: nn.Module, variables: Any, images: jax.Array) -> DHPEHooks:
    """The trained DHPE's f_R and f_F for test-time refinement (:class:`DHPEHooks`).

    f_R reads the parameters as the DHPE places them, from the crops' base point: refine
    the network's p(t) as it is, with ``base_translation=params.crop_base_translation(K,
    S)`` (as ``evaluate`` does). f_R's pooled feature f is computed once here from ``images``.

    Args:
      model: the DHPE (``handfit.models.dhpe.DHPE``); variables: its ``params`` and
        ``batch_stats``.
      images: [B, S, S, 3] the crops in [0, 1].
    Returns:
      DHPEHooks(refine_joints2d: (p [B, 63], joints3d [B, 21, 3] camera space, joints2d
      [B, 21, 2] crop pixels) -> [B, 21, 2]; features: (images [B, S, S, 3]) -> [B, D];
      images). Both are ``jax.tree_util.Partial``s (pytrees) of hashable callables, so
      :func:`refine` compiles once for all hooks of one model (the variables and images
      are traced arguments).
    """
    features = jax.tree_util.Partial(_Hook(model, "features"), variables)
    return DHPEHooks(
        refine_joints2d=jax.tree_util.Partial(
            _Hook(model, "refine_joints2d"), variables, features(images)
        ),
        features=features,
        images=images,
    )


class RefineResult(NamedTuple):
    """Result of ``refine`` / ``fit``.

    params: the refined MeshParams (batch B).
    vertices: [B, V, 3] camera space (metres).
    joints3d: [B, 21, 3] camera space (metres).
    joints2d: [B, 21, 2] the projected joints, pixels of the camera's image.
    target2d: [B, 21, 2] the 2D joints of the last step (f_R's estimate with DHPE hooks,
      else the evidence).
    losses: [steps, B] each example's weighted loss before each step.
    terms: {name: [steps, B]} each unweighted term before each step (terms that are off
      are left out).
    overflow: [B] int32, the largest silhouette overflow over the steps (0: the render
      budget was enough; see ``render.soft_silhouette``).
    """

    params: MeshParams
    vertices: jnp.ndarray
    joints3d: jnp.ndarray
    joints2d: jnp.ndarray
    target2d: jnp.ndarray
    losses: jnp.ndarray
    terms: dict[str, jnp.ndarray]
    overflow: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Settings of ``refine`` (hashable: a static argument of jit). Each default is
    configs/default.py's ``config.refine`` field of the same name (``handfit.defaults``).

    The loss of one example is ``joints2d_weight * mean_j ||(pi(J_j) - j2D_j) / S||^2``
    (visible joints; S the image's longer side, ``losses.joints2d_loss``) ``+
    silhouette_weight * mean_px (R(m) - s)^2`` (``losses.shape_loss``; or the feature
    term ``losses.feature_loss``) ``+ shape_prior_weight * ||beta||^2 + pose_prior_weight *
    sum of squared joint-limit violations (radians) + pose_anchor_weight * ||theta -
    theta_start||^2`` (radians^2: the articulation stays near the start's, which 2D joints
    alone leave ambiguous in depth) ``+ laplacian_weight *
    losses.laplacian_loss`` and, with ``Evidence.world``, ``world_joints_weight *
    mean_j ||(J_j - mean J) - (W_j - mean W)||^2`` (metres^2, visible joints) ``+
    world_bones_weight * mean_bones ||unit(bone of J) - unit(bone of W)||^2``.

    The groups (pose, shape, quat, scale, trans) differ in how far a unit moves the
    projection (a finger joint's radian moves a few joints by ~50 px, a metre of
    translation moves all of them by ~1000 px), so plain gradient descent takes a step
    ``learning_rate * group_lr[g]`` per group ``g``; each update entry is then clipped to
    ``max_update`` and non-finite updates are dropped, so a degenerate start stays finite.
    """

    steps: int = REFINE.steps
    optimizer: str = REFINE.optimizer  # 'adam' or 'sgd' (the paper's gradient descent)
    learning_rate: float = REFINE.learning_rate
    # Step size per group, times learning_rate: (pose, shape, quat, scale, trans).
    group_lr: tuple[float, ...] = REFINE.group_lr
    momentum: float = REFINE.momentum  # SGD only; 0 is plain gradient descent
    final_lr: float = REFINE.final_lr  # cosine decay of every step size to this fraction
    max_update: float = REFINE.max_update
    joints2d_weight: float = REFINE.joints2d_weight
    silhouette_weight: float = REFINE.silhouette_weight
    silhouette_target: str = REFINE.silhouette_target  # 'auto': 'mask' if given, else 'initial'
    shape_prior_weight: float = REFINE.shape_prior_weight
    pose_prior_weight: float = REFINE.pose_prior_weight
    pose_anchor_weight: float = REFINE.pose_anchor_weight
    laplacian_weight: float = REFINE.laplacian_weight
    laplacian_mode: str = REFINE.laplacian_mode
    world_joints_weight: float = REFINE.world_joints_weight  # centred 3D joints, metres^2
    world_bones_weight: float = REFINE.world_bones_weight  # unit bone directions
    freeze: tuple[str, ...] = REFINE.freeze
    render_size: int = REFINE.render_size  # longer side of the silhouettes; 0: the camera's
    sigma: float = REFINE.sigma  # soft silhouette sharpness, pixels^2 at render_size
    tile: int = REFINE.tile
    budget: int = REFINE.budget  # (face, window) pairs per silhouette; 0: auto (see refine)
    budget_margin: float = REFINE.budget_margin  # auto budget: the start's need times this
    fit_starts: int = REFINE.fit_starts  # fit: refine from this many coarse alignments

    def __post_init__(self):
        def bad(field, value, expected):
            raise ValueError(f"refine config: {field}={value!r}, expected {expected}")

        if self.steps < 0:
            bad("steps", self.steps, "an integer >= 0")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        if len(self.group_lr) != len(GROUPS):
            bad("group_lr", self.group_lr, f"{len(GROUPS)} numbers for {GROUPS}")
        if self.silhouette_target not in SILHOUETTE_TARGETS:
            bad("silhouette_target", self.silhouette_target, f"one of {SILHOUETTE_TARGETS}")
        for field in dataclasses.fields(self):
            if field.name.endswith("_weight") and not getattr(self, field.name) >= 0:
                bad(field.name, getattr(self, field.name), "a number >= 0")
        if self.laplacian_mode not in ("delta", "plain"):
            bad("laplacian_mode", self.laplacian_mode, "'delta' or 'plain'")
        for name in self.freeze:
            if name not in GROUPS:
                bad("freeze", self.freeze, f"names from {GROUPS}")
        if self.render_size < 0 or self.sigma <= 0 or self.tile < 1 or self.budget < 0:
            bad(
                "render_size/sigma/tile/budget",
                (self.render_size, self.sigma, self.tile, self.budget),
                "render_size >= 0, sigma > 0, tile >= 1, budget >= 0",
            )

    @classmethod
    def from_config(cls, config: Mapping | RefineConfig) -> RefineConfig:
        """From the ``config.refine`` section (a ConfigDict or dict): its fields that are
        RefineConfig's (the others are the command line's); a key that is not in
        ``configs/default.py``'s section is an error."""
        if isinstance(config, cls):
            return config
        return defaults.build(cls, config, known=("refine",))


class _Faces:
    """Concrete faces as a hashable static argument (the Laplacian needs them concrete)."""

    def __init__(self, faces: np.ndarray):
        self.array = np.ascontiguousarray(faces, np.int32)
        self._key = (self.array.shape, self.array.tobytes())

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Faces) and self._key == other._key


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_finite(name: str, value) -> None:
    """Raises naming the field and the first example that holds NaN (concrete values only)."""
    if value is None or not _is_concrete(value):
        return
    a = np.asarray(value)
    if a.size == 0:
        return
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1) if a.ndim else ~np.isfinite(a)
    if np.any(bad):
        raise ValueError(
            f"refine: {name} holds NaN or inf in example {int(np.flatnonzero(bad)[0])} "
            f"(of {a.shape[0]}); clean or drop that example (use visible=0 for unknown joints)"
        )


def _known(points, visible):
    """``points [B, 21, k]`` with the joints whose visibility is 0 set to 0 (they may be NaN)."""
    return jnp.where(jnp.asarray(visible)[..., None] > 0, points, 0.0)


def _render_shape(camera: Camera, size: int) -> tuple[int, int]:
    """(h, w) of the refinement's silhouettes: the camera's aspect, longer side ``size``."""
    h, w = camera.height, camera.width
    if size <= 0:
        return h, w
    long = max(h, w)
    return max(1, round(h * size / long)), max(1, round(w * size / long))


def _check_inputs(p: MeshParams, ev: Evidence, camera: Camera, cfg: RefineConfig, dhpe) -> str:
    """Shapes and NaN checks; returns the silhouette target in use."""
    if not isinstance(p, MeshParams):
        raise TypeError(f"refine: params must be a handfit.params.MeshParams, got {type(p)}")
    b = p.pose.shape[0]
    for (name, size), value in zip(params.SIZES, p, strict=True):
        if value.shape != (b, size):
            raise ValueError(
                f"refine: params.{name} must be [B, {size}] = [{b}, {size}], got {value.shape}"
            )
        _check_finite(f"params.{name}", value)
    nj = skeleton.NUM_JOINTS
    if ev.joints2d.shape != (b, nj, 2):
        raise ValueError(
            f"refine: evidence.joints2d must be [{b}, {nj}, 2], got {ev.joints2d.shape}"
        )
    if ev.visible.shape != (b, nj):
        raise ValueError(f"refine: evidence.visible must be [{b}, {nj}], got {ev.visible.shape}")
    _check_finite("evidence.visible", ev.visible)
    _check_finite("evidence.joints2d (at visible joints)", _known(ev.joints2d, ev.visible))
    if ev.world is not None:
        if ev.world.shape != (b, nj, 3):
            raise ValueError(f"refine: evidence.world must be [{b}, {nj}, 3], got {ev.world.shape}")
        _check_finite("evidence.world (at visible joints)", _known(ev.world, ev.visible))
    if ev.mask is not None:
        if ev.mask.shape != (b, camera.height, camera.width):
            raise ValueError(
                f"refine: evidence.mask must be [B, H, W] = [{b}, {camera.height}, "
                f"{camera.width}] (the camera's size), got {ev.mask.shape}"
            )
        _check_finite("evidence.mask", ev.mask)
    target = cfg.silhouette_target
    if target == "auto":
        target = "mask" if ev.mask is not None else "initial"
    if cfg.silhouette_weight > 0 and target == "mask" and ev.mask is None:
        raise ValueError("refine: silhouette_target='mask' needs evidence.mask [B, H, W]")
    if cfg.silhouette_weight > 0 and target == "features":
        if dhpe is None or dhpe.features is None or dhpe.images is None:
            raise ValueError(
                "refine: silhouette_target='features' needs DHPEHooks with features and images"
            )
        if dhpe.images.ndim != 4 or dhpe.images.shape[0] != b:
            raise ValueError(f"refine: dhpe.images must be [{b}, H, W, 3], got {dhpe.images.shape}")
        _check_finite("dhpe.images", dhpe.images)
    return target


def _base_points(base_translation, trans: jnp.ndarray) -> jnp.ndarray:
    """``base_translation`` ([3] or [B, 3]) as [B, 3] in ``trans``'s dtype; errors name it."""
    base = jnp.asarray(base_translation, trans.dtype)
    if base.shape not in ((3,), trans.shape):
        raise ValueError(
            f"refine: base_translation must be [3] or [B, 3] = {list(trans.shape)}, "
            f"got {base.shape}"
        )
    _check_finite("base_translation", jnp.broadcast_to(base, trans.shape))
    return jnp.broadcast_to(base, trans.shape)


def refine(
    params: MeshParams,
    evidence: Evidence,
    model: mano.HandModel,
    camera: Camera,
    config: Mapping | RefineConfig,
    dhpe: DHPEHooks | None = None,
    *,
    base_translation: jax.Array | tuple = params.BASE_TRANSLATION,
) -> RefineResult:
    """Eq. 13: ``config.steps`` gradient steps on the 63 parameters towards the evidence.

    Args:
      params: the start, MeshParams with batch B (e.g. the network's estimate), placed
        from ``base_translation``.
      evidence: Evidence(joints2d [B, 21, 2] px, visible [B, 21], mask [B, H, W] or None),
        in the camera's image. NaN or inf is rejected here, naming the field and example.
      model: the hand model.
      camera: the camera of the image (fields [] or [B]); silhouettes are rendered with it
        resized to ``render_size`` (the mask is resized to match).
      config: a RefineConfig or the ``config.refine`` section.
      dhpe: optional hooks of a trained DHPE (:func:`dhpe_hooks`): with ``refine_joints2d``
        the 2D target is re-estimated by f_R from the current parameters at every step (as
        the paper does); with ``features`` and ``images`` the 'features' silhouette term is
        available.
      base_translation: [3] or [B, 3], where ``trans = 0`` puts the middle MCP (metres;
        ``params.mesh``): ``params.BASE_TRANSLATION``, or for a DHPE's estimates its crops'
        ``params.crop_base_translation(K, S)``. The result's parameters use the same base.

    Returns:
      RefineResult. A pure function of its inputs: it may be called under ``jit`` or
      ``grad`` (the NaN checks then only run on concrete values; the Laplacian needs the
      model's faces concrete, i.e. the model closed over rather than traced).
    """
    cfg = RefineConfig.from_config(config)
    target = _check_inputs(params, evidence, camera, cfg, dhpe)
    base = _base_points(base_translation, params.trans)
    evidence = evidence._replace(
        joints2d=_known(evidence.joints2d, evidence.visible),
        world=None if evidence.world is None else _known(evidence.world, evidence.visible),
    )
    camera = batch_camera(camera, params.pose.shape[0])
    faces = model.faces
    static_faces = _Faces(np.asarray(faces)) if _is_concrete(faces) else None
    if static_faces is None and cfg.laplacian_weight > 0:
        raise TypeError(
            "refine: the Laplacian term needs the model's faces concrete: close over the "
            "model instead of passing it traced, or set laplacian_weight=0"
        )
    f_r = None if dhpe is None else _as_pytree(dhpe.refine_joints2d)
    f_f = None if dhpe is None else _as_pytree(dhpe.features)
    images = None if dhpe is None else dhpe.images
    run = functools.partial(_refine, cfg=cfg, target=target, faces=static_faces)
    args = (params, evidence, model, camera, base, images, f_r, f_f)
    if params.pose.shape[0] == 0:
        return _empty_result(run, args)
    budget = cfg.budget or auto_budget(params, model, camera, base, cfg)
    return run(*args, budget=budget)


def _empty_result(run: Callable, args: tuple) -> RefineResult:
    """The result for a batch of 0: the shapes of a batch of 1's result, batch axis 0."""
    p, ev, model, camera, base, images, f_r, f_f = args

    def one(x):
        return jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)

    batched = jax.tree.map(one, (p, ev, camera, base, images))
    shapes = jax.eval_shape(
        lambda *a: run(*a, budget=512), *batched[:2], model, *batched[2:], f_r, f_f
    )

    def empty(s, axis=0):
        shape = list(s.shape)
        shape[axis] = 0
        return jnp.zeros(shape, s.dtype)

    return jax.tree.map(empty, shapes._replace(losses=None, terms=None))._replace(
        losses=empty(shapes.losses, 1), terms={n: empty(v, 1) for n, v in shapes.terms.items()}
    )


def _as_pytree(hook: Callable | None) -> jax.tree_util.Partial | None:
    """A hook as a pytree argument of the jitted loop: its arrays are traced and its function
    is compared by equality, so new hooks of the same model (:func:`dhpe_hooks` per
    batch) reuse the compiled loop. A plain function becomes a Partial without arguments."""
    if hook is None or isinstance(hook, jax.tree_util.Partial):
        return hook
    return jax.tree_util.Partial(hook)


def auto_budget(
    p: MeshParams, model: mano.HandModel, camera: Camera, base: jax.Array, cfg: RefineConfig
) -> int:
    """The renderer's budget :func:`refine` uses when ``cfg.budget`` is 0: the start mesh's
    (face, window) pairs times ``budget_margin``, rounded up to 512.

    ``p`` [B] start parameters, ``camera`` the image's (or a batch of B), ``base`` [3] or
    [B, 3] the base points of ``p``'s translation. 0 when the silhouette term is off. Falls
    back to ``render.soft.default_budget`` (enough for a hand filling the image) when the
    inputs are traced. Starts whose need rounds to another multiple compile again.
    """
    if cfg.silhouette_weight <= 0:
        return 0
    h, w = _render_shape(camera, cfg.render_size)
    if not all(_is_concrete(x) for x in jax.tree.leaves((p, model, camera, base))):
        return render.soft.default_budget(int(model.faces.shape[0]), h, w, cfg.tile)
    small = render.resize(camera, (h, w))
    need = _start_need(p, model, small, base, sigma=cfg.sigma, tile=cfg.tile)
    return 512 * max(1, math.ceil(float(np.max(need)) * cfg.budget_margin / 512))


@functools.partial(jax.jit, static_argnames=("sigma", "tile"))
def _start_need(p: MeshParams, model: mano.HandModel, camera: Camera, base, *, sigma, tile):
    """[B] (face, window) pairs the silhouettes of ``p``'s meshes (placed from ``base``) need."""
    verts = params.mesh(p, model, base_translation=base).vertices
    return render.candidate_count(verts, model.faces, camera, sigma=sigma, tile=tile)


def _world_joints(joints: jnp.ndarray, world: jnp.ndarray, visible: jnp.ndarray) -> jnp.ndarray:
    """[B] mean squared distance (m^2) of the visible joints [B, 21, 3] to ``world``, each
    set taken relative to its visible joints' centroid."""
    w = visible[..., None]
    count = jnp.maximum(jnp.sum(visible, -1), 1.0)[:, None, None]

    def centred(x):
        return x - jnp.sum(w * x, 1, keepdims=True) / count

    return (
        jnp.sum(visible * jnp.sum(jnp.square(centred(joints) - centred(world)), -1), -1)
        / (count[:, 0, 0])
    )


def _world_bones(joints: jnp.ndarray, world: jnp.ndarray, visible: jnp.ndarray) -> jnp.ndarray:
    """[B] mean over bones with both ends visible of the squared difference of the unit bone
    directions of ``joints`` [B, 21, 3] and ``world``."""
    parent = np.asarray([p for p, _ in skeleton.BONES])
    child = np.asarray([c for _, c in skeleton.BONES])

    def unit(x):
        d = x[:, child] - x[:, parent]
        return d / jnp.sqrt(jnp.sum(jnp.square(d), -1, keepdims=True) + 1e-12)

    both = visible[:, parent] * visible[:, child]
    err = jnp.sum(jnp.square(unit(joints) - unit(world)), -1)
    return jnp.sum(both * err, -1) / jnp.maximum(jnp.sum(both, -1), 1.0)


def _per_example(fn: Callable, *args) -> jnp.ndarray:
    """[B] values of a batch-mean loss ``fn`` evaluated on each example alone."""
    return jax.vmap(lambda *a: fn(*(x[None] for x in a)))(*args)


def _group_optimizer(cfg: RefineConfig) -> optax.GradientTransformation:
    def one(name: str, scale: float) -> optax.GradientTransformation:
        if name in cfg.freeze:
            return optax.set_to_zero()
        lr = optax.cosine_decay_schedule(
            cfg.learning_rate * scale, max(cfg.steps, 1), alpha=cfg.final_lr
        )
        if cfg.optimizer == "adam":
            return optax.adam(lr)
        return optax.sgd(lr, momentum=cfg.momentum or None)

    transforms = {n: one(n, s) for n, s in zip(GROUPS, cfg.group_lr, strict=True)}
    return optax.chain(
        optax.multi_transform(transforms, MeshParams(*GROUPS)),
        optax.clip(cfg.max_update),
    )


class _Problem(NamedTuple):
    """What the refinement loss reads besides the parameters (fixed over the steps)."""

    model: mano.HandModel
    camera: Camera  # fields [B]: the evidence's image
    base: jax.Array  # [B, 3] where trans = 0 puts the middle MCP
    visible: jax.Array  # [B, 21] in the parameters' dtype
    world: jax.Array | None  # [B, 21, 3] in the parameters' dtype, or None
    images: jax.Array | None  # [B, H, W, 3] the crops of the 'features' term
    f_r: Callable | None  # the DHPE's f_R (DHPEHooks.refine_joints2d)
    f_f: Callable | None  # the DHPE's f_F (DHPEHooks.features)
    faces: jax.Array | np.ndarray  # [F, 3]: _Faces.array when concrete, else the model's
    render_camera: Camera  # the camera resized to the silhouettes' (h, w)
    budget: int  # (face, window) pairs per silhouette
    sil_target: jax.Array | None = None  # [B, h, w] the 'mask' or 'initial' target
    feat_target: jax.Array | None = None  # [B, D] f_F of the images, the 'features' target
    start_pose: jax.Array | None = None  # [B, 45] the start's pose (the pose anchor's)


@functools.partial(jax.jit, static_argnames=("cfg", "target", "faces", "budget"))
def _refine(p0, evidence, model, camera, base, images, f_r, f_f, *, cfg, target, faces, budget):
    """``refine``'s compiled work on checked inputs (camera fields [B], base [B, 3]):
    ``cfg.steps`` steps from ``p0`` towards ``evidence`` with the silhouette ``target``;
    ``faces`` is a static ``_Faces`` or None (traced), ``budget`` the silhouettes'."""
    dtype = p0.pose.dtype
    render_camera = render.resize(camera, _render_shape(camera, cfg.render_size))
    prob = _Problem(
        model=model,
        camera=camera,
        base=base,
        visible=evidence.visible.astype(dtype),
        world=None if evidence.world is None else evidence.world.astype(dtype),
        images=images,
        f_r=f_r,
        f_f=f_f,
        faces=model.faces if faces is None else faces.array,
        render_camera=render_camera,
        budget=budget,
    )
    sil_target, feat_target = _silhouette_targets(p0, evidence.mask, prob, cfg, target)
    prob = prob._replace(sil_target=sil_target, feat_target=feat_target, start_pose=p0.pose)
    loss_fn = functools.partial(_loss, prob=prob, cfg=cfg, target=target)
    target0 = evidence.joints2d.astype(dtype)
    p, target2d, loss_buf, term_buf, overflow = _descend(loss_fn, p0, target0, cfg)
    out = _mesh(p, prob)
    return RefineResult(
        params=p,
        vertices=out.vertices,
        joints3d=out.joints,
        joints2d=render.project(out.joints, camera),
        target2d=target2d,
        losses=loss_buf,
        terms=term_buf,
        overflow=overflow,
    )


def _mesh(p: MeshParams, prob: _Problem) -> params.Placed:
    """The hands of ``p`` [B] placed from ``prob.base`` (``params.mesh``)."""
    return params.mesh(p, prob.model, base_translation=prob.base)


def _silhouette(vertices: jax.Array, prob: _Problem, cfg: RefineConfig) -> tuple:
    """(silhouettes [B, h, w], overflow [B]) of the meshes ``vertices`` [B, V, 3]."""
    out = render.soft_silhouette(
        vertices, prob.faces, prob.render_camera, sigma=cfg.sigma, tile=cfg.tile, budget=prob.budget
    )
    return out.silhouette, out.overflow


def _silhouette_targets(
    p0: MeshParams, mask: jax.Array | None, prob: _Problem, cfg: RefineConfig, target: str
) -> tuple[jax.Array | None, jax.Array | None]:
    """The silhouette term's fixed target: (the mask [B, H, W] resized, or the start's
    silhouettes, [B, h, w]; None) or (None; f_F of the images [B, D]); (None, None) when
    the term is off."""
    if cfg.silhouette_weight <= 0:
        return None, None
    if target == "mask":
        shape = (p0.pose.shape[0], *_render_shape(prob.camera, cfg.render_size))
        return jax.image.resize(mask.astype(p0.pose.dtype), shape, "linear"), None
    if target == "initial":
        return jax.lax.stop_gradient(_silhouette(_mesh(p0, prob).vertices, prob, cfg)[0]), None
    return None, jax.lax.stop_gradient(prob.f_f(prob.images))  # 'features'


def _loss(p: MeshParams, prev2d: jax.Array, *, prob: _Problem, cfg: RefineConfig, target: str):
    """The summed loss of ``p`` [B] and (per-example loss [B], unweighted terms {name: [B]},
    2D target [B, 21, 2], silhouette overflow [B]); ``prev2d`` is the last step's target."""
    out = _mesh(p, prob)
    joints2d = render.project(out.joints, prob.camera)
    target2d = prev2d
    if prob.f_r is not None:
        target2d = jax.lax.stop_gradient(prob.f_r(p.to_vector(), out.joints, prev2d))
    size = float(max(prob.camera.height, prob.camera.width))
    terms = {
        "joints2d": _per_example(
            lambda a, t, v: losses.joints2d_loss(
                joints2d_pred=a, joints2d_true=t, visible=v, crop_size=size
            ),
            joints2d,
            target2d,
            prob.visible,
        )
    }
    overflow = jnp.zeros((p.pose.shape[0],), jnp.int32)
    if cfg.silhouette_weight > 0:
        terms["silhouette"], overflow = _silhouette_term(
            out.vertices, p.pose.dtype, prob, cfg, target
        )
    terms.update(_mesh_terms(p, out, prob, cfg))
    weights = {
        "joints2d": cfg.joints2d_weight,
        "silhouette": cfg.silhouette_weight,
        "shape_prior": cfg.shape_prior_weight,
        "pose_prior": cfg.pose_prior_weight,
        "pose_anchor": cfg.pose_anchor_weight,
        "laplacian": cfg.laplacian_weight,
        "world_joints": cfg.world_joints_weight,
        "world_bones": cfg.world_bones_weight,
    }
    per_example = sum(weights[k] * v for k, v in terms.items())
    return jnp.sum(per_example), (per_example, terms, target2d, overflow)


def _silhouette_term(
    vertices: jax.Array, dtype, prob: _Problem, cfg: RefineConfig, target: str
) -> tuple[jax.Array, jax.Array]:
    """(the silhouette term [B] of the meshes ``vertices`` [B, V, 3], overflow [B]): the
    shape loss to ``prob.sil_target``, or with target 'features' the feature loss of the
    images masked by the silhouettes to ``prob.feat_target``."""
    sil, overflow = _silhouette(vertices, prob, cfg)
    if target == "features":
        img = prob.images.astype(dtype)
        up = jax.image.resize(sil, img.shape[:3], "linear")
        term = _per_example(
            lambda f, g: losses.feature_loss(features=f, masked_features=g),
            prob.feat_target,
            prob.f_f(img * up[..., None]),
        )
    else:
        term = _per_example(
            lambda s, m: losses.shape_loss(silhouettes=s, masks=m), sil, prob.sil_target
        )
    return term, overflow


def _mesh_terms(
    p: MeshParams, out: params.Placed, prob: _Problem, cfg: RefineConfig
) -> dict[str, jax.Array]:
    """The terms that are on among those of the parameters and the placed hands ``out``
    alone (no rendering): priors, world joints and bones, Laplacian; {name: [B]}."""
    terms = {}
    if cfg.shape_prior_weight > 0:
        terms["shape_prior"] = jnp.sum(jnp.square(p.shape), -1)
    if cfg.pose_prior_weight > 0 and prob.model.joint_limits is not None:
        terms["pose_prior"] = losses.joint_limit_violation(pose=p.pose, model=prob.model)
    if cfg.pose_anchor_weight > 0:
        terms["pose_anchor"] = jnp.sum(jnp.square(p.pose - prob.start_pose), -1)
    if prob.world is not None and cfg.world_joints_weight > 0:
        terms["world_joints"] = _world_joints(out.joints, prob.world, prob.visible)
    if prob.world is not None and cfg.world_bones_weight > 0:
        terms["world_bones"] = _world_bones(out.joints, prob.world, prob.visible)
    if cfg.laplacian_weight > 0:  # refine checked the faces are concrete (_Faces.array)
        terms["laplacian"] = _per_example(
            lambda v: losses.laplacian_loss(
                vertices=v,
                template=prob.model.v_template,
                faces=prob.faces,
                mode=cfg.laplacian_mode,
            ),
            out.model_frame.vertices,
        )
    return terms


def _descend(loss_fn: Callable, p0: MeshParams, target0: jax.Array, cfg: RefineConfig) -> tuple:
    """``cfg.steps`` optimizer steps on ``loss_fn`` (``_loss`` bound) from ``p0`` [B] and
    the 2D target ``target0`` [B, 21, 2], in one ``lax.fori_loop``.

    Returns (params, the last 2D target [B, 21, 2], losses [steps, B], terms
    {name: [steps, B]}, the largest overflow [B]).
    """
    b, dtype = p0.pose.shape[0], p0.pose.dtype
    optimizer = _group_optimizer(cfg)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    term_names = jax.eval_shape(loss_fn, p0, target0)[1][1].keys()

    def step(k, carry):
        p, opt_state, prev2d, loss_buf, term_buf, overflow = carry
        (_, (per_example, terms, target2d, ovf)), grads = grad_fn(p, prev2d)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        updates = jax.tree.map(lambda u: jnp.where(jnp.isfinite(u), u, 0.0), updates)
        p = optax.apply_updates(p, updates)
        loss_buf = loss_buf.at[k].set(per_example)
        term_buf = {n: term_buf[n].at[k].set(v) for n, v in terms.items()}
        return p, opt_state, target2d, loss_buf, term_buf, jnp.maximum(overflow, ovf)

    carry = (
        p0,
        optimizer.init(p0),
        target0,
        jnp.zeros((cfg.steps, b), dtype),
        {n: jnp.zeros((cfg.steps, b), dtype) for n in term_names},
        jnp.zeros((b,), jnp.int32),
    )
    final = jax.lax.fori_loop(0, cfg.steps, step, carry) if cfg.steps else carry  # 0: the start
    p, _, target2d, loss_buf, term_buf, overflow = final
    return p, target2d, loss_buf, term_buf, overflow


def _start_rotations() -> np.ndarray:
    """[40, 3, 3] out-of-plane start rotations: yaw every 45 degrees x pitch -60..60 by 30."""
    out = []
    for yaw in np.deg2rad(np.arange(0, 360, 45)):
        for pitch in np.deg2rad(np.arange(-60, 61, 30)):
            cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
            ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
            out.append(rx @ ry)
    return np.stack(out)


def _placement(fit: tuple, size: float, cam: Camera, i: int) -> tuple:
    """(rotation [3, 3], metric scale, middle MCP position [3]) of example ``i``'s coarse fit
    ``(residual, s, R, t)`` (normalised image coordinates), for a hand ``size`` times the
    model's: a weak camera takes the fit's scale as the hand's, a perspective one as depth."""
    _, s, rot, t = fit
    s = s / size
    ref = cam.ref_depth[i]
    if cam.weak:
        scale, depth = max(s * ref, 1e-6), params.BASE_TRANSLATION[2]
    else:
        scale, depth = params.BASE_SCALE, params.BASE_SCALE / max(s, 1e-6)
    lift = ref if cam.weak else depth  # normalised image coordinates to metres
    return rot, scale, np.array([t[0] * lift, t[1] * lift, depth])


def align(
    joints2d: jnp.ndarray,
    visibility: jnp.ndarray,
    camera: Camera,
    model: mano.HandModel,
    *,
    keep: int = 1,
    world: jnp.ndarray | None = None,
) -> MeshParams:
    """Coarse global placement of the mean-pose hand on 2D joints (NumPy, on the host).

    For each of 40 out-of-plane start rotations, a weighted 2D similarity (in-plane
    rotation, scale, offset; ``metrics.similarity_transform``) maps the rotated model's
    root-relative joints onto the 2D joints in normalised image coordinates, which is a
    weak-perspective fit; the scale gives the depth (perspective camera) or the hand's
    scale (weak camera). The ``keep`` rotations with the smallest weighted residual are
    returned. With ``world`` (metric 3D joints in the camera's axes, [B, 21, 3]) the
    rotation that best maps the model's joints onto them (``metrics.similarity_transform``,
    rigid) is the first start, and the depth (perspective camera) or scale (weak camera)
    takes the hand's metric size from them (their spread over the model's). An example
    with fewer than 2 visible joints keeps the neutral start.

    Args:
      joints2d: [B, 21, 2] pixels; visibility: [B, 21]; camera: fields [] or [B].
      model: the hand model.
      keep: how many starts per example.
    Returns:
      MeshParams with batch ``B * keep`` (example-major: rows ``b * keep .. b * keep + keep - 1``
      are example b's starts, best first); pose is the model's mean pose, shape 0.
    """
    j2d = np.asarray(joints2d, np.float64)
    vis = np.asarray(visibility, np.float64)
    w3d = None if world is None else np.asarray(world, np.float64)
    b = j2d.shape[0]
    cam = jax.tree.map(lambda x: np.asarray(x, np.float64), batch_camera(camera, b))
    neutral = MeshParams.initial(1, model)
    rest = np.asarray(params.mesh(neutral, model).joints[0], np.float64)
    rest = rest - rest[skeleton.MIDDLE_MCP]
    rots = _start_rotations()
    base = np.asarray(params.BASE_TRANSLATION)
    starts = []  # (rotation [3, 3], metric scale, middle MCP position [3]) of each start
    for i in range(b):
        centre, focal = np.stack([cam.cx[i], cam.cy[i]]), np.stack([cam.fx[i], cam.fy[i]])
        uv = (j2d[i] - centre) / focal
        fits = []
        if np.count_nonzero(vis[i] > 0) >= 2:
            for rc in rots:
                src = (rest @ rc.T)[:, :2]
                s, r2, t = metrics.similarity_transform(src, uv, vis[i])
                res = np.sum(vis[i] * np.sum((s * src @ r2.T + t - uv) ** 2, -1))
                rz = np.eye(3)
                rz[:2, :2] = r2
                fits.append((res, s, rz @ rc, t))
            fits.sort(key=lambda f: f[0])
            if w3d is not None and np.count_nonzero(vis[i] > 0) >= 3:
                _, rc, _ = metrics.similarity_transform(rest, w3d[i], vis[i], scale=False)
                s, _, t = metrics.similarity_transform((rest @ rc.T)[:, :2], uv, vis[i])
                fits.insert(0, (0.0, s, rc, t))
        size = 1.0  # the hand's size over the model's
        if w3d is not None and np.count_nonzero(vis[i] > 0) >= 3:
            wi = vis[i][:, None] * (w3d[i] - np.average(w3d[i], axis=0, weights=vis[i]))
            ri = vis[i][:, None] * (rest - np.average(rest, axis=0, weights=vis[i]))
            size = float(np.sqrt(np.sum(wi**2) / max(np.sum(ri**2), 1e-12)))
        for k in range(keep):
            neutral = (np.eye(3), params.BASE_SCALE, base)
            starts.append(
                _placement(fits[min(k, len(fits) - 1)], size, cam, i) if fits else neutral
            )
    n = len(starts)
    rot, scale, position = (
        jnp.asarray(np.reshape([x[j] for x in starts], shape), jnp.float32)
        for j, shape in enumerate([(n, 3, 3), (n,), (n, 3)])
    )
    mean = MeshParams.initial(n, model)  # the mean pose, shape 0
    return params.encode(
        pose=mean.pose,
        shape=mean.shape,
        rotation=rot,
        scale=scale,
        position=position,
    )


def _repeat_camera(camera: Camera, b: int, k: int) -> Camera:
    """The camera with fields [B * k], each example's camera repeated k times."""
    return jax.tree.map(lambda x: jnp.repeat(x, k), batch_camera(camera, b))


def _fit_inputs(joints2d, visibility) -> tuple[jnp.ndarray, jnp.ndarray]:
    """joints2d [B, 21, 2] with unknown (visibility 0) joints set to 0, and visibility [B, 21];
    errors name the field and the example."""
    j2d = np.asarray(joints2d, np.float32)
    vis = np.asarray(visibility, np.float32)
    nj = skeleton.NUM_JOINTS
    if j2d.ndim != 3 or j2d.shape[1:] != (nj, 2):
        raise ValueError(f"fit: joints2d must be [B, {nj}, 2], got {j2d.shape}")
    if vis.shape != j2d.shape[:2]:
        raise ValueError(f"fit: visibility must be [{j2d.shape[0]}, {nj}], got {vis.shape}")
    _check_finite("visibility", vis)  # NaN visibility has no meaning: 0 or 1 per joint
    _check_finite("joints2d (at visible joints)", np.where(vis[..., None] > 0, j2d, 0.0))
    return jnp.asarray(np.where(vis[..., None] > 0, j2d, 0.0)), jnp.asarray(vis)


def fit(
    joints2d: jnp.ndarray,
    visibility: jnp.ndarray,
    camera: Camera,
    model: mano.HandModel,
    *,
    mask: jnp.ndarray | None = None,
    world: jnp.ndarray | None = None,
    config: Mapping | RefineConfig,
) -> RefineResult:
    """Fits the hand model to 2D joints (and a mask and metric 3D joints), with no network.

    ``align`` gives the ``fit_starts`` best coarse placements of the mean-pose hand per
    example; ``refine`` runs from all of them at once (a batch of B * fit_starts) and each
    example keeps the start whose last loss is lowest.

    Args:
      joints2d: [B, 21, 2] pixels of the camera's image, canonical order.
      visibility: [B, 21] 1 for known joints.
      camera: the image's camera (fields [] or [B]).
      model: the hand model.
      mask: [B, H, W] foreground in [0, 1] at the camera's size, or None.
      world: [B, 21, 3] metric 3D joints around the hand's centre in the camera's axes (a
        detector's world landmarks; see ``Evidence``), or None.
      config: RefineConfig or the ``config.refine`` section.
    Returns:
      RefineResult with batch B (B may be 0). Unknown joints may hold NaN where their
      visibility is 0; visibility itself must be finite.
    """
    cfg = RefineConfig.from_config(config)
    j2d, vis = _fit_inputs(joints2d, visibility)
    b, k = j2d.shape[0], max(1, cfg.fit_starts)
    if world is not None:
        world = jnp.asarray(world, jnp.float32)
        if world.shape != j2d.shape[:2] + (3,):
            raise ValueError(f"fit: world must be [{b}, 21, 3], got {world.shape}")
        world = _known(world, vis)
        _check_finite("world (at visible joints)", world)
    start = align(j2d, vis, camera, model, keep=k, world=world)

    def rep(x):
        return None if x is None else jnp.repeat(jnp.asarray(x, jnp.float32), k, axis=0)

    evidence = Evidence(rep(j2d), rep(vis), rep(mask), rep(world))
    res = refine(start, evidence, model, _repeat_camera(camera, b, k), cfg)
    last = res.losses[-1] if cfg.steps else jnp.zeros((b * k,))
    best = jnp.argmin(last.reshape(b, k), axis=1) + jnp.arange(b) * k
    picked = jax.tree.map(lambda x: x[best], res._replace(losses=None, terms=None))
    return picked._replace(
        losses=res.losses[:, best], terms={n: v[:, best] for n, v in res.terms.items()}
    )
