"""Checkpoints in a workdir (orbax): the full training state, and the model's variables apart.

Layout: ``<workdir>/checkpoints/<step>/{state,variables}``. ``state`` is whatever the
trainer saves to resume (parameters, batch statistics, optimiser state, step);
``variables`` is ``{'params': ..., 'batch_stats': ...}`` alone, so evaluation and
refinement restore the network without knowing the optimiser. Beside them, each
process's input-pipeline position of a checkpoint (:func:`save_input_state`) is
``<workdir>/input_state/<step>.p<process>.json``.

A checkpoint that cannot be restored (a truncated or missing file) is *damaged*:
:func:`restore_state` falls back to the newest one that restores, with a warning naming
the damaged ones, which it moves to ``<workdir>/checkpoints.damaged/<step>`` (kept for
inspection; the resumed run saves those steps anew). :func:`restore_variables` raises
:class:`CheckpointError` naming the checkpoint and the steps there are. A save that cannot
be written (a full disk) raises :class:`CheckpointError` from :func:`save` or :func:`wait`;
orbax writes into ``<step>.orbax-checkpoint-tmp`` and renames it when complete, so the
earlier checkpoints stay intact and an unfinished one is ignored.
"""

from __future__ import annotations

import json
import logging as logging_std
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from handfit.errors import UserError

ITEMS = ("state", "variables")
DAMAGED = "checkpoints.damaged"


class CheckpointError(UserError):
    """A checkpoint cannot be restored or written; the message names it, the cause and what
    to do."""


def directory(workdir: str | os.PathLike) -> str:
    """``<workdir>/checkpoints`` as an absolute path (orbax needs one)."""
    return os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")


def step_directory(workdir: str | os.PathLike, step: int) -> str:
    """``<workdir>/checkpoints/<step>``: the folder of checkpoint ``step``."""
    return os.path.join(directory(workdir), str(step))


def input_state_path(workdir: str | os.PathLike, step: int) -> str:
    """``<workdir>/input_state/<step>.p<process>.json``: this process's input position at
    checkpoint ``step``."""
    return os.path.join(os.fspath(workdir), "input_state", f"{step}.p{jax.process_index()}.json")


def save_input_state(workdir: str | os.PathLike, step: int, state: dict) -> None:
    """Writes the input iterator's ``state`` (a JSON-able dict, e.g. grain's ``get_state()``)
    for checkpoint ``step``: a temporary file renamed, so a kill leaves the old one or none."""
    path = input_state_path(workdir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


def load_input_state(workdir: str | os.PathLike, step: int) -> dict:
    """The input iterator's state saved with checkpoint ``step`` (:func:`save_input_state`).

    Raises FileNotFoundError (saying how to start over) when it is missing and ValueError
    when it is not valid JSON, each naming the file.
    """
    path = input_state_path(workdir, step)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: the checkpoint of step {step} has no input-pipeline position, "
            f"so the run cannot resume exactly; delete {directory(workdir)} to start over"
        )
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def manager(
    workdir: str | os.PathLike, *, max_to_keep: int | None = 3, create: bool = True
) -> ocp.CheckpointManager:
    """The workdir's checkpoint manager (keeps the newest ``max_to_keep``)."""
    _quiet_orbax_noise()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(directory(workdir), options=options, item_names=ITEMS)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, variables: Any) -> None:
    """Saves both items at ``step`` (asynchronously; :func:`wait` blocks until written).

    Raises :class:`CheckpointError` when this or the previous save could not be written
    (e.g. a full disk); the checkpoints written before are intact.
    """
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), variables=ocp.args.StandardSave(variables)
    )
    try:
        mngr.save(step, args=args)
    except Exception as e:  # orbax re-raises the previous save's failure here
        raise _write_error(mngr, e) from e


def wait(mngr: ocp.CheckpointManager) -> None:
    """Blocks until the pending save is written; its failure is a :class:`CheckpointError`."""
    try:
        mngr.wait_until_finished()
    except Exception as e:
        raise _write_error(mngr, e) from e


def _write_error(mngr: ocp.CheckpointManager, error: BaseException) -> CheckpointError:
    steps = mngr.all_steps()  # finished ones only
    newest = f"step {max(steps)}" if steps else "none yet: the run starts over"
    return CheckpointError(
        f"a checkpoint could not be written in {mngr.directory} ({_cause(error)}); is the "
        f"disk full? Free space and rerun the same command: it resumes from the newest "
        f"complete checkpoint ({newest})"
    )


def _cause(error: BaseException) -> str:
    """The first line of an error, with its type (orbax's messages run over many lines)."""
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0][:300]}"


def _orbax_noise(unraisable) -> bool:
    """Whether an unraisable exception is orbax's leftover from a failed restore or save: its
    reads and writes still in flight call back into the closed event loop ('Event loop is
    closed'), and its abandoned coroutines report their own errors."""
    value, obj = unraisable.exc_value, unraisable.object
    closed = isinstance(value, RuntimeError) and "Event loop is closed" in str(value)
    code = getattr(obj, "cr_code", None)
    return closed or (code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename)


def _orbax_read_error(exc_info) -> bool:
    """Whether a log record's exception is one of orbax's reads: raised in orbax's code, or
    set by tensorstore (no Python frames; its messages carry a ``tensorstore_spec``)."""
    if not exc_info:
        return False
    tb = exc_info[2]
    if tb is None:
        return "tensorstore_spec" in str(exc_info[1])
    while tb is not None:  # frame by frame: no source lines read (this may run at exit)
        if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _NoOrbaxTracebacks(logging_std.Filter):
    """Keeps orbax's error log lines but drops their tracebacks: the failure surfaces as
    this module's one :class:`CheckpointError`, which names the cause."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
            record.exc_info, record.exc_text = None, None
        return True


class _NoOrbaxUnretrieved(logging_std.Filter):
    """Drops asyncio's "exception was never retrieved" reports of orbax's reads abandoned by
    a failed restore (one per array, each repeating the error the restore raised)."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        return not ("never retrieved" in record.getMessage() and _orbax_read_error(record.exc_info))


def _quiet_orbax_noise() -> None:
    """Hides orbax's leftovers of a failed restore or save (one traceback per array, printed
    by its threads around the error), so the error itself is what the user reads.

    Installed once, when the first manager is made; other unraisable exceptions and log
    records still print.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_handfit_quiet", False):
        return

    def hook(unraisable):
        if not _orbax_noise(unraisable):
            previous(unraisable)

    hook._handfit_quiet = True
    sys.unraisablehook = hook
    logging_std.getLogger("absl").addFilter(_NoOrbaxTracebacks())
    logging_std.getLogger("asyncio").addFilter(_NoOrbaxUnretrieved())


def _restore(mngr: ocp.CheckpointManager, step: int, **abstract) -> dict:
    """The named items of ``step``, restored to the structures ``abstract`` gives."""
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(v) for k, v in abstract.items()})
    return mngr.restore(step, args=args)


def _set_aside(mngr: ocp.CheckpointManager, steps: list[int]) -> list[str]:
    """Moves damaged step folders to ``<workdir>/checkpoints.damaged/`` (process 0; every
    process then waits and re-reads the folder). Returns where each went."""
    root = os.fspath(mngr.directory)
    target = os.path.join(os.path.dirname(root), DAMAGED)
    moved = []
    for step in steps:
        dest, n = os.path.join(target, str(step)), 1
        while os.path.exists(dest):
            dest, n = os.path.join(target, f"{step}.{n}"), n + 1
        moved.append(dest)
        if jax.process_index() == 0:
            os.makedirs(target, exist_ok=True)
            shutil.move(os.path.join(root, str(step)), dest)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("handfit_checkpoint_set_aside")
    mngr.reload()
    return moved


def restore_state(
    mngr: ocp.CheckpointManager,
    abstract_state: Any,
    step: int | None = None,
    *,
    also: Callable[[int], None] | None = None,
) -> tuple[Any, int]:
    """``(state, step)`` of the newest checkpoint that restores (or of ``step``), or
    ``(None, 0)`` if there is none.

    ``abstract_state`` gives the structure, shapes and dtypes (e.g. the fresh state, or
    ``jax.eval_shape`` of its constructor). ``also(step)`` restores what else belongs to
    a checkpoint (e.g. the input pipeline's position); its failure counts as damage too.

    Without ``step``, damaged newer checkpoints are skipped with a warning naming each and
    its cause, and moved to ``<workdir>/checkpoints.damaged/``. Raises
    :class:`CheckpointError` listing every checkpoint and its cause when none restores
    (then nothing is moved: the config, not the files, may be what differs).
    """
    steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
    failures: list[tuple[int, BaseException]] = []
    for s in steps:
        try:
            state = _restore(mngr, s, state=abstract_state)["state"]
            if also is not None:
                also(s)
        except Exception as e:  # orbax raises ValueError, JSONDecodeError, OSError, ...
            failures.append((s, e))
            continue
        if failures:
            moved = _set_aside(mngr, [f for f, _ in failures])
            for (bad, error), dest in zip(failures, moved, strict=True):
                logging.warning(
                    "checkpoint %s is damaged and was skipped (%s); moved to %s. Resuming "
                    "from step %d.",
                    os.path.join(os.fspath(mngr.directory), str(bad)),
                    _cause(error),
                    dest,
                    s,
                )
        return state, int(s)
    if failures:
        listed = "; ".join(
            f"{os.path.join(os.fspath(mngr.directory), str(s))}: {_cause(e)}" for s, e in failures
        )
        raise CheckpointError(
            f"no checkpoint in {mngr.directory} can be restored ({listed}). If the config "
            f"differs from the one that trained them, use that one; if the files are damaged, "
            f"move them away to start over"
        ) from failures[0][1]
    return None, 0


def restore_variables(
    workdir: str | os.PathLike, abstract_variables: Any, step: int | None = None
) -> tuple[Any, int]:
    """``(variables, step)`` from ``<workdir>/checkpoints``: the newest, or ``step``.

    Raises FileNotFoundError naming the folder when it holds no checkpoint (or not
    ``step``), and :class:`CheckpointError` naming the checkpoint, the cause and the other
    steps when it cannot be restored (damaged, or saved from another model).
    """
    mngr = manager(workdir, create=False) if os.path.isdir(directory(workdir)) else None
    try:
        steps = sorted(mngr.all_steps()) if mngr else []
        if not steps or (step is not None and step not in steps):
            want = "no checkpoint" if step is None else f"no step {step} (it has {steps})"
            raise FileNotFoundError(
                f"{directory(workdir)} holds {want}: train first with "
                f"python main.py --mode=train --config=<config> --workdir={workdir}"
            )
        step = max(steps) if step is None else step
        try:
            restored = _restore(mngr, step, variables=abstract_variables)
        except Exception as e:
            others = [s for s in steps if s != step]
            hint = f"; other steps: --config.eval.step=N with N in {others}" if others else ""
            raise CheckpointError(
                f"checkpoint {os.path.join(directory(workdir), str(step))} cannot be restored "
                f"({_cause(e)}): it is damaged, or holds another model than this config "
                f"builds{hint}"
            ) from e
        return restored["variables"], int(step)
    finally:
        if mngr is not None:
            mngr.close()


def newest_step(workdir: str | os.PathLike) -> int | None:
    """The newest finished step folder in ``<workdir>/checkpoints`` (unfinished ones, named
    ``<step>.orbax-checkpoint-tmp``, do not count), or None; no restore is tried."""
    root = directory(workdir)
    steps = [int(n) for n in os.listdir(root) if n.isdigit()] if os.path.isdir(root) else []
    return max(steps, default=None)
