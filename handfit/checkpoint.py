"""Checkpoints in a workdir (orbax): the full training state, and the model's variables apart.

Layout: ``<workdir>/checkpoints/<step>/{state,variables}``. ``state`` is whatever the
trainer saves to resume (parameters, batch statistics, optimiser state, step);
``variables`` is ``{'params': ..., 'batch_stats': ...}`` alone, so evaluation and
refinement restore the network without knowing the optimiser.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

ITEMS = ("state", "variables")


def directory(workdir: str | os.PathLike) -> str:
    """``<workdir>/checkpoints`` as an absolute path (orbax needs one)."""
    return os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")


def manager(
    workdir: str | os.PathLike, *, max_to_keep: int | None = 3, create: bool = True
) -> ocp.CheckpointManager:
    """The workdir's checkpoint manager (keeps the newest ``max_to_keep``)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(directory(workdir), options=options, item_names=ITEMS)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, variables: Any) -> None:
    """Saves both items at ``step`` (asynchronously; ``mngr.wait_until_finished()`` to block)."""
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), variables=ocp.args.StandardSave(variables)
        ),
    )


def restore_state(mngr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None):
    """``(state, step)`` of the newest (or given) checkpoint, or ``(None, 0)`` if there is none.

    ``abstract_state`` gives the structure, shapes and dtypes (e.g. the fresh state, or
    ``jax.eval_shape`` of its constructor).
    """
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, 0
    restored = mngr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"], int(step)


def restore_variables(
    workdir: str | os.PathLike, abstract_variables: Any, step: int | None = None
) -> tuple[Any, int]:
    """``(variables, step)`` from ``<workdir>/checkpoints``: the newest, or ``step``.

    Raises FileNotFoundError naming the folder when it holds no checkpoint (or not ``step``).
    """
    mngr = manager(workdir, create=False) if os.path.isdir(directory(workdir)) else None
    steps = list(mngr.all_steps()) if mngr else []
    if not steps or (step is not None and step not in steps):
        want = "no checkpoint" if step is None else f"no step {step} (it has {sorted(steps)})"
        raise FileNotFoundError(
            f"{directory(workdir)} holds {want}: train first with "
            f"python main.py --mode=train --config=<config> --workdir={workdir}"
        )
    step = max(steps) if step is None else step
    restored = mngr.restore(
        step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(abstract_variables))
    )
    return restored["variables"], int(step)
