"""Config checks: every field's valid range before anything is built, and agreement with the
config a workdir's checkpoints were trained with (``<workdir>/config.json``).

:func:`validate` raises :class:`ConfigError` naming the first field out of range (``main.py``,
``train.train_and_evaluate`` and ``evaluate.evaluate`` call it first). Fields that a config
does not have are not checked (a config may predate them).

``<workdir>/config.json`` records what a workdir's checkpoints hold. :func:`check_workdir`
compares a config with it: a resume must keep :data:`RESUME_FIELDS` (the training state's
shapes and what the network computes; :func:`check_resume`, which also refuses a
``train.steps`` below the newest checkpoint), an evaluation :data:`MODEL_FIELDS`.
:func:`record` writes it once a run is known to go on, keeping a changed predecessor.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from handfit import defaults
from handfit.errors import UserError

CONFIG_FILE = "config.json"


class ConfigError(UserError, ValueError):
    """A config value out of range, or a config that does not match a workdir's checkpoints."""


# ----------------------------------------------------------------------------- ranges

Rule = tuple[Callable[[Any], bool], str]  # (accepts the value, what is expected)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v and abs(v) < 1e300


def _integer(lo: int) -> Rule:
    def accepts(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= lo

    return accepts, f"an integer >= {lo}"


def _above(lo: float) -> Rule:
    return (lambda v: _real(v) and v > lo), f"a finite number > {lo}"


def _at_least(lo: float) -> Rule:
    return (lambda v: _real(v) and v >= lo), f"a finite number >= {lo}"


def _within(lo: float, hi: float, hi_open: bool = False) -> Rule:
    close = ")" if hi_open else "]"
    return (
        lambda v: _real(v) and lo <= v and (v < hi if hi_open else v <= hi),
        f"a number in [{lo}, {hi}{close}",
    )


def _one_of(options) -> Rule:
    options = tuple(options)
    return (lambda v: v in options), f"one of {options}"


def _some_of(options) -> Rule:
    options = tuple(options)
    return (
        lambda v: isinstance(v, list | tuple) and all(x in options for x in v)
    ), f"a tuple of {options}"


def _numbers(n: int, rule: Rule, optional: bool = False) -> Rule:
    accepts, text = rule
    return (
        lambda v: (
            (optional and v is None)
            or (isinstance(v, list | tuple) and len(v) == n and all(accepts(x) for x in v))
        )
    ), f"{'None or ' if optional else ''}{n} numbers, each {text}"


def _optional(rule: Rule) -> Rule:
    accepts, text = rule
    return (lambda v: v is None or accepts(v)), f"None or {text}"


def _increasing_fractions(v) -> bool:
    return (
        isinstance(v, list | tuple)
        and all(_real(x) and 0 < x < 1 for x in v)
        and all(a < b for a, b in zip(v, v[1:], strict=False))
    )


_BOOL: Rule = (lambda v: isinstance(v, bool)), "True or False"
_TEXT: Rule = (lambda v: isinstance(v, str)), "a string"
_WIDTHS: Rule = (
    (lambda v: isinstance(v, tuple | list) and all(type(w) is int and w > 0 for w in v)),
    "a tuple of layer widths >= 1, e.g. (256,), or () for none",
)
_NONEMPTY_TEXT: Rule = (lambda v: isinstance(v, str) and bool(v)), "a non-empty string"


def _rules() -> dict[str, Rule]:
    """Every checked field and its rule (imports the modules that own the choices)."""
    from handfit import losses, metrics, params, refine
    from handfit.data import builders
    from handfit.models import dhpe

    rules = {
        "seed": _integer(0),
        "hand.model_path": _TEXT,
        "hand.side": _one_of(("right", "left")),
        "data.dir": _NONEMPTY_TEXT,
        "data.manual_dir": _TEXT,
        "data.train": _some_of(builders.TRAIN_SPLIT),  # not empty for --mode=train (train.py)
        "data.test": _some_of(builders.TEST_SPLIT),
        "data.image_size": _integer(8),
        "data.heatmap_size": _integer(1),
        "data.heatmap_sigma": _above(0),
        "data.crop_scale": _above(0),
        "data.mirror_left": _BOOL,
        "data.scale_jitter": _within(0, 1, hi_open=True),
        "data.translate_jitter": _at_least(0),
        "data.rotation_deg": _at_least(0),
        "data.color_jitter": _at_least(0),
        "data.workers": _integer(0),
        "data.synthetic.num_train": _integer(1),
        "data.synthetic.num_test": _integer(1),
        "data.synthetic.image_size": _integer(8),
        "data.synthetic.focal": _above(0),
        "data.synthetic.fill": _above(0),
        "data.synthetic.rotation_deg": _numbers(3, _at_least(0)),
        "data.synthetic.shape_std": _at_least(0),
        "data.synthetic.test_rotation_deg": _numbers(3, _at_least(0), optional=True),
        "data.synthetic.test_shape_std": _optional(_at_least(0)),
        "data.synthetic.occluder_prob": _within(0, 1),
        "data.synthetic.background_dir": _TEXT,
        "data.synthetic.seed": _integer(0),
        "model.backbone": _one_of(dhpe.BACKBONES),
        "model.pretrained": _TEXT,
        "model.backbone_width": _integer(0),
        "model.cpm_input": _one_of(dhpe.CPM_INPUTS),
        "model.heatmap_form": _one_of(dhpe.HEATMAP_FORMS),
        "model.mesh_hidden": _WIDTHS,
        "model.mesh_feature_width": _integer(0),
        "model.refiner_hidden": _WIDTHS,
        "model.rotation_form": _one_of(params.ROTATION_FORMS),
        "model.cpm_stages": _integer(1),
        "model.cpm_width": _integer(1),
        "model.cpm_kernel": _integer(1),
        "model.cpm_depth": _integer(1),
        "model.iterations": _integer(1),
        "model.use_refiner": _BOOL,
        "model.mask_head": _BOOL,
        "model.mask_head_width": _integer(1),
        "model.render_size": _integer(0),
        "model.sigma": _above(0),
        "model.render_budget": _integer(0),
        "model.render_tile": _integer(1),
        "refine.enabled": _BOOL,
        "refine.steps": _integer(0),
        "refine.reestimate_joints2d": _BOOL,
        "refine.joints2d_half_weight_spread": _at_least(0),
        "refine.input": _TEXT,
        "refine.optimizer": _one_of(refine.OPTIMIZERS),
        "refine.learning_rate": _above(0),
        "refine.group_lr": _numbers(len(refine.GROUPS), _at_least(0)),
        "refine.momentum": _within(0, 1, hi_open=True),
        "refine.final_lr": _at_least(0),
        "refine.max_update": _above(0),
        "refine.joints2d_weight": _at_least(0),
        "refine.silhouette_weight": _at_least(0),
        "refine.silhouette_target": _one_of(refine.SILHOUETTE_TARGETS),
        "refine.shape_prior_weight": _at_least(0),
        "refine.pose_prior_weight": _at_least(0),
        "refine.pose_anchor_weight": _at_least(0),
        "refine.laplacian_weight": _at_least(0),
        "refine.laplacian_mode": _one_of(("delta", "plain")),
        "refine.freeze": _some_of(refine.GROUPS),
        "refine.render_size": _integer(0),
        "refine.sigma": _above(0),
        "refine.tile": _integer(1),
        "refine.budget": _integer(0),
        "refine.budget_margin": _at_least(1),
        "refine.fit_starts": _integer(1),
        "refine.focal": _above(0),
        "augment.enabled": _BOOL,
        "augment.start_step": _integer(0),
        "augment.per_seed": _integer(1),
        "augment.shape_range": _at_least(0),
        "augment.rotation_deg": _numbers(3, _at_least(0)),
        "augment.background_dir": _TEXT,
        "augment.preview_every": _integer(0),
        "augment.ambient": _at_least(0),
        "augment.diffuse": _at_least(0),
        "augment.vertex_tolerance": _at_least(0),
        "augment.joint_tolerance": _at_least(0),
        "eval.step": _integer(-1),
        "eval.batch_size": _integer(1),
        "eval.max_examples": _integer(0),
        "eval.protocol": _one_of(metrics.PROTOCOLS),
        "eval.pck_steps": _integer(2),
        "eval.num_samples": _integer(0),
        "eval.workdirs": ((lambda v: isinstance(v, list | tuple)), "a tuple of folders"),
        "loss.tau": _above(0),
        "loss.constant_shape_weight": _BOOL,
        "loss.use_2d_losses": _BOOL,
        "loss.supervise_occluded": _BOOL,
        "loss.mesh_iterations": _one_of(("last", "all")),
        "loss.laplacian_mode": _one_of(("delta", "plain")),
        "optim.learning_rate": _above(0),
        "optim.schedule": _one_of(("cosine", "step")),
        "optim.warmup_steps": _integer(0),
        "optim.end_factor": _at_least(0),
        "optim.step_boundaries": (_increasing_fractions, "increasing fractions in (0, 1)"),
        "optim.step_factor": _above(0),
        "optim.weight_decay": _at_least(0),
        "optim.grad_clip": _at_least(0),
        "train.steps": _integer(1),
        "train.batch_size": _integer(1),
        "train.log_every": _integer(1),
        "train.checkpoint_every": _integer(1),
        "train.max_to_keep": _integer(1),
        "train.eval_every": _integer(0),
        "train.eval_batches": _integer(0),
        "train.progress": _BOOL,
        "train.distributed": _BOOL,
        "train.teacher_joints2d": _within(0, 1),
        "train.teacher_until": _within(0, 1),
        "hands.num_random": _integer(0),
        "hands.mesh_format": _one_of(("obj", "ply", "glb", "stl")),
    }
    for term in losses.DEFAULT_WEIGHTS:
        rules[f"loss.weights.{term}"] = _at_least(0)
    return rules


_MISSING = object()


def _get(config: Mapping, path: str):
    """The value at a dotted ``path``, or ``_MISSING``."""
    node = config
    for key in path.split("."):
        if not isinstance(node, Mapping | ml_collections.ConfigDict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _trained(saved_config: Mapping, path: str):
    """The value at ``path`` a workdir's model was trained with: its ``config.json``'s, or
    for a field added after it was written, ``configs/default.py``'s (a new field's default
    is the behaviour from before it existed); ``_MISSING`` for neither."""
    value = _get(saved_config, path)
    if value is _MISSING and path.startswith("model."):
        value = _get(defaults.config(), path)
    return value


def _bad(path: str, value, expected: str) -> ConfigError:
    return ConfigError(f"config.{path}={value!r}; expected {expected}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` naming the first field whose value is out of its range.

    Checks ranges (steps, batch sizes, intervals, sizes, weights, sigma, ...), choices and
    types of every field in ``configs/default.py``, the names in ``loss.weights``, and that
    ``model.render_size`` divides ``data.image_size``. Cheap: call it before building anything.
    """
    from handfit import losses

    for path, (accepts, expected) in _rules().items():
        value = _get(config, path)
        if value is not _MISSING and not accepts(value):
            raise _bad(path, value, expected)
    weights = _get(config, "loss.weights")
    if weights is not _MISSING:
        unknown = sorted(set(weights) - set(losses.DEFAULT_WEIGHTS))
        if unknown:
            raise ConfigError(
                f"config.loss.weights has unknown terms {unknown}; known: "
                f"{sorted(losses.DEFAULT_WEIGHTS)}"
            )
    size, render = _get(config, "data.image_size"), _get(config, "model.render_size")
    if _MISSING not in (size, render) and render and size % render:
        raise ConfigError(
            f"config.model.render_size={render} does not divide config.data.image_size={size}: "
            f"the masks are pooled to the rendered size (e.g. --config.model.render_size="
            f"{max(d for d in range(1, render + 1) if size % d == 0)})"
        )


# ----------------------------------------------------------------------------- workdirs

# What the network computes and what its parameters are: an evaluation must use the same.
MODEL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "model.backbone": str,
    "model.backbone_width": int,
    "model.cpm_input": str,
    "model.heatmap_form": str,
    "model.mesh_hidden": tuple,
    "model.mesh_feature_width": int,
    "model.refiner_hidden": tuple,
    "model.rotation_form": str,
    "model.cpm_stages": int,
    "model.cpm_width": int,
    "model.cpm_kernel": int,
    "model.cpm_depth": int,
    "model.iterations": int,
    "model.use_refiner": bool,
    "model.mask_head": bool,
    "model.mask_head_width": int,
    "data.image_size": int,
    "data.heatmap_size": int,
    "hand.model_path": lambda p: os.path.basename(str(p)),  # the file, wherever it lies
    "hand.side": str,
}
# A resume also keeps the optimiser state's structure (clipping on or off).
RESUME_FIELDS: dict[str, Callable[[Any], Any]] = MODEL_FIELDS | {
    "optim.grad_clip": lambda v: bool(v)
}


def with_trained_model(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    """A copy of ``config`` whose model is the one the workdir's checkpoints hold: the
    :data:`MODEL_FIELDS` (but the hand's) of its ``config.json``; ``config`` itself when it
    has none. ``--mode=eval`` compares several workdirs (ablations) this way, each with its
    own network and every other setting (test data, refinement, protocol) from ``config``."""
    old = saved(workdir)
    if old is None:
        return config
    out = config.copy_and_resolve_references()
    for path, norm in MODEL_FIELDS.items():
        value = _trained(old, path)
        if value is not _MISSING and not path.startswith("hand."):
            section, field = path.split(".")
            out[section][field] = norm(value)
    return out


def config_path(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CONFIG_FILE)


def saved(workdir: str | os.PathLike) -> dict | None:
    """The workdir's ``config.json`` as a dict, or None when it has none."""
    path = config_path(workdir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{path} cannot be read ({e}): it records the config the workdir's checkpoints "
            f"were trained with; restore it, or delete it to skip this check"
        ) from e


def _plain(config: ml_collections.ConfigDict) -> dict:
    """The config as ``config.json`` holds it (tuples as lists)."""
    return json.loads(config.to_json_best_effort())


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: Mapping, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """``{path: (old value, new value)}`` for every field that differs (absent: ``None``)."""
    a, b = _flatten(old), _flatten(_plain(config))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _flag(path: str, value) -> str:
    if isinstance(value, list | tuple):
        return f'--config.{path}="{tuple(value)!r}"'
    return f"--config.{path}={value}"


def check_workdir(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    fields: Mapping[str, Callable[[Any], Any]] = MODEL_FIELDS,
    *,
    action: str = "evaluate",
) -> None:
    """Raises :class:`ConfigError` when ``config`` differs from the workdir's ``config.json``
    in one of ``fields`` (compared after each field's normaliser), naming every such field.

    Does nothing when the workdir has no ``config.json``.
    """
    old = saved(workdir)
    if old is None:
        return
    new = _plain(config)
    differ = []
    for path, norm in fields.items():
        a, b = _trained(old, path), _get(new, path)
        if a is _MISSING or b is _MISSING:
            continue
        if norm(a) != norm(b):
            differ.append((path, a, b))
    if not differ:
        return
    listed = ", ".join(f"{p} {a!r} -> {b!r}" for p, a, b in differ)
    flags = " ".join(_flag(p, a) for p, a, _ in differ)
    raise ConfigError(
        f"cannot {action} {os.fspath(workdir)}: its checkpoints hold a model trained with "
        f"other settings ({config_path(workdir)}): {listed}. Use the training's values "
        f"({flags}), or another --workdir"
    )


def check_resume(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """:func:`validate`, then, when the workdir has checkpoints, that the config keeps their
    model (:data:`RESUME_FIELDS` against its ``config.json``) and that ``train.steps`` is not
    below the newest one's step. Raises :class:`ConfigError`; builds nothing."""
    from handfit import checkpoint

    validate(config)
    newest = checkpoint.newest_step(workdir)
    if newest is None:
        return
    check_workdir(config, workdir, RESUME_FIELDS, action="resume")
    if newest > config.train.steps:
        raise ConfigError(
            f"config.train.steps={config.train.steps} is below the step of the newest "
            f"checkpoint in {checkpoint.directory(workdir)} ({newest}): nothing to train. "
            f"Raise --config.train.steps above {newest} to train on, or use another --workdir"
        )


def record(config: ml_collections.ConfigDict, workdir: str | os.PathLike, step: int) -> dict:
    """Writes ``<workdir>/config.json``; returns what changed since the previous one.

    A previous ``config.json`` that differs is kept as ``config.until_step_<step>.json``
    (``step``: the checkpoint the run goes on from), so the record of what trained the
    earlier steps is not lost. The new file is written atomically.
    """
    path = config_path(workdir)
    old = saved(workdir)
    diff = changes(old, config) if old is not None else {}
    if diff:
        os.replace(path, os.path.join(os.fspath(workdir), f"config.until_step_{step}.json"))
    os.makedirs(os.fspath(workdir), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)
    return diff
