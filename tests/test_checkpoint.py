"""Checkpoints: both items round-trip; variables restore alone; a missing one is explained;
a damaged one is skipped (training) or named (evaluation)."""

import asyncio
import logging
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from handfit import checkpoint


def test_state_and_variables_round_trip(tmp_path):
    mngr = checkpoint.manager(tmp_path)
    for step in (3, 7):
        state = {"params": {"w": jnp.full(3, float(step))}, "opt": (jnp.arange(2.0),)}
        variables = {"params": {"w": jnp.full(3, float(step))}, "batch_stats": {"m": jnp.ones(1)}}
        checkpoint.save(mngr, step, state, variables)
    mngr.wait_until_finished()
    zeros_state = {"params": {"w": jnp.zeros(3)}, "opt": (jnp.zeros(2),)}
    state, step = checkpoint.restore_state(checkpoint.manager(tmp_path), zeros_state)
    assert step == 7
    np.testing.assert_array_equal(state["params"]["w"], [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(state["opt"][0], [0.0, 1.0])
    zeros_vars = {"params": {"w": jnp.zeros(3)}, "batch_stats": {"m": jnp.zeros(1)}}
    variables, step = checkpoint.restore_variables(tmp_path, zeros_vars, step=3)
    assert step == 3
    np.testing.assert_array_equal(variables["params"]["w"], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(variables["batch_stats"]["m"], [1.0])


def test_nothing_to_restore(tmp_path):
    state, step = checkpoint.restore_state(checkpoint.manager(tmp_path), {"w": jnp.zeros(1)})
    assert state is None and step == 0
    with pytest.raises(FileNotFoundError, match="holds no checkpoint.*--mode=train"):
        checkpoint.restore_variables(tmp_path / "empty", {"w": jnp.zeros(1)})


def _two_checkpoints(workdir, leaves=1):
    """Checkpoints at steps 2 and 4 of ``leaves`` arrays, each filled with its step."""
    mngr = checkpoint.manager(workdir)
    for step in (2, 4):
        tree = {f"w{i}": jnp.full(300, float(step)) for i in range(leaves)}
        checkpoint.save(mngr, step, {"params": tree}, {"params": tree})
    mngr.wait_until_finished()
    mngr.close()
    return {"params": {f"w{i}": jnp.zeros(300) for i in range(leaves)}}


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _data_file(workdir, step, item):
    """The OCDBT data file of an item (the arrays' bytes)."""
    folder = os.path.join(checkpoint.directory(workdir), str(step), item, "d")
    (name,) = os.listdir(folder)
    return os.path.join(folder, name)


@pytest.mark.parametrize("damage", ["metadata", "data"])
def test_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_restored(
    tmp_path, damage, caplog
):
    zeros = _two_checkpoints(tmp_path)
    bad = os.path.join(checkpoint.directory(tmp_path), "4")
    _truncate(
        os.path.join(bad, "state", "_METADATA")
        if damage == "metadata"
        else _data_file(tmp_path, 4, "state")
    )
    mngr = checkpoint.manager(tmp_path)
    state, step = checkpoint.restore_state(mngr, zeros)
    assert step == 2
    np.testing.assert_array_equal(state["params"]["w0"], np.full(300, 2.0))
    assert f"checkpoint {bad} is damaged" in caplog.text and "Resuming from step 2" in caplog.text
    # Kept for inspection, out of the way of the resumed run, which saves step 4 anew.
    assert os.path.isdir(tmp_path / "checkpoints.damaged" / "4")
    assert list(mngr.all_steps()) == [2]
    checkpoint.save(mngr, 4, state, state)
    mngr.wait_until_finished()
    assert list(mngr.all_steps()) == [2, 4]
    mngr.close()


def test_a_failing_companion_restore_counts_as_damage(tmp_path, caplog):
    zeros = _two_checkpoints(tmp_path)
    for step in (2, 4):
        checkpoint.save_input_state(tmp_path, step, {"last_seen_indices": {"0": step}})
    path = checkpoint.input_state_path(tmp_path, 4)
    with open(path, "w") as f:
        f.write('{"last_seen_indices": ')  # cut short by a kill
    positions = []

    def input_position(step):
        positions.append(checkpoint.load_input_state(tmp_path, step))

    mngr = checkpoint.manager(tmp_path)
    _, step = checkpoint.restore_state(mngr, zeros, also=input_position)
    mngr.close()
    assert step == 2 and positions == [{"last_seen_indices": {"0": 2}}]
    assert f"{path} is not valid JSON" in caplog.text


def test_a_missing_input_state_names_its_file_and_how_to_start_over(tmp_path):
    checkpoint.save_input_state(tmp_path, 2, {"position": 8})
    assert os.listdir(tmp_path / "input_state") == ["2.p0.json"]  # no temporary file left
    with pytest.raises(FileNotFoundError) as info:
        checkpoint.load_input_state(tmp_path, 4)
    message = str(info.value)
    assert checkpoint.input_state_path(tmp_path, 4) in message
    assert f"delete {checkpoint.directory(tmp_path)} to start over" in message


def test_when_no_checkpoint_restores_each_is_named_and_none_moved(tmp_path):
    _two_checkpoints(tmp_path)
    other_model = {"params": {"w0": jnp.zeros(300), "extra": jnp.zeros(2)}}
    mngr = checkpoint.manager(tmp_path)
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.restore_state(mngr, other_model)
    mngr.close()
    for step in ("2", "4"):
        assert os.path.join(checkpoint.directory(tmp_path), step) + ":" in str(info.value)
    assert sorted(os.listdir(checkpoint.directory(tmp_path))) == ["2", "4"]


def test_damaged_variables_raise_one_clear_error_without_orbax_noise(tmp_path):
    zeros = _two_checkpoints(tmp_path, leaves=40)
    _truncate(_data_file(tmp_path, 4, "variables"))
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"checkpoints/4 cannot be restored.*"
        r"damaged.*--config.eval.step=N with N in \[2\]",
    ):
        checkpoint.restore_variables(tmp_path, zeros)
    variables, step = checkpoint.restore_variables(tmp_path, zeros, step=2)
    assert step == 2 and float(variables["params"]["w39"][0]) == 2.0
    # orbax's reads still in flight report into its closed event loop after the error has
    # surfaced, one traceback each; pytest collects those itself, so look from outside.
    script = (
        "import gc, sys, time, jax.numpy as jnp\n"
        "from handfit import checkpoint\n"
        "zeros = {'params': {f'w{i}': jnp.zeros(300) for i in range(40)}}\n"
        "try:\n"
        f"    checkpoint.restore_variables({str(tmp_path)!r}, zeros)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
        "time.sleep(0.5)\n"
        "gc.collect()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.stdout.strip() == "CheckpointError", run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_orbax_abandoned_reads_are_not_reported_but_other_asyncio_errors_are(tmp_path, caplog):
    """asyncio reports each read a failed restore abandoned ("Future exception was never
    retrieved") when it is collected, whenever that is; both kinds are dropped: raised in
    orbax's code, or set by tensorstore with no Python frames. Anything else still shows."""
    checkpoint.manager(tmp_path)  # installs the filters
    scope = {}
    where = os.path.join(os.sep, "site", "orbax", "serialization.py")
    exec(compile("def read():\n    raise ValueError('read failed')\n", where, "exec"), scope)
    try:
        scope["read"]()
    except ValueError as e:
        in_orbax = e
    from_tensorstore = ValueError('OUT_OF_RANGE: Error reading "w5" [tensorstore_spec={}]')
    try:
        raise RuntimeError("a task of the user's own")
    except RuntimeError as e:
        unrelated = e
    loop = asyncio.new_event_loop()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for error in (in_orbax, from_tensorstore, unrelated):
            loop.call_exception_handler(
                {"message": "Future exception was never retrieved", "exception": error}
            )
    loop.close()
    assert [r.exc_info[1] for r in caplog.records] == [unrelated]


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_ones(tmp_path):
    """A write failure (here a file-size limit, as a full disk) is one clear error; the
    unfinished checkpoint is ignored and the next run resumes from the last complete one."""
    zeros = {"params": {f"w{i}": jnp.zeros(300) for i in range(40)}}
    mngr = checkpoint.manager(tmp_path)
    checkpoint.save(mngr, 2, zeros, zeros)
    checkpoint.wait(mngr)
    mngr.close()
    script = (
        "import resource, signal, jax.numpy as jnp\n"
        "from handfit import checkpoint\n"
        "tree = {'params': {f'w{i}': jnp.ones(300) for i in range(40)}}\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        f"mngr = checkpoint.manager({str(tmp_path)!r})\n"
        "try:\n"
        "    checkpoint.save(mngr, 4, tree, tree)\n"
        "    checkpoint.wait(mngr)\n"
        "except checkpoint.CheckpointError as e:\n"
        "    print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "could not be written" in run.stdout and "complete checkpoint (step 2)" in run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    mngr = checkpoint.manager(tmp_path)
    state, step = checkpoint.restore_state(mngr, zeros)
    assert step == 2
    checkpoint.save(mngr, 4, state, state)  # the resumed run writes step 4 again
    checkpoint.wait(mngr)
    assert list(mngr.all_steps()) == [2, 4]
    mngr.close()
