"""Checkpoints: both items round-trip; variables restore alone; a missing one is explained."""

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
