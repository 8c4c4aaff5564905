"""One process of test_train.py's two-process run (not a test), with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set::

    python tests/distributed_worker.py WORKDIR CONFIG.json RECORDS.pkl OUT.npz

Joins the other process (``train.initialize_distributed``), trains the config (4 steps,
checkpoints at 2 and 4) on the pickled records; then truncates an array file of checkpoint
4 and trains again, which resumes from checkpoint 2. Process 0 saves the parameters of both
runs to OUT.npz.
"""

import json
import os
import pickle
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"  # one device each
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from handfit import train  # noqa: E402


def main(workdir: str, config_json: str, records_pickle: str, out: str) -> None:
    jax.config.update("jax_disable_most_optimizations", True)
    train.initialize_distributed()
    with open(config_json) as f:
        config = ml_collections.ConfigDict(json.load(f))
    config.train.distributed = True
    with open(records_pickle, "rb") as f:
        records = pickle.load(f)
    first = jax.device_get(train.train(config, workdir, records).params)
    multihost_utils.sync_global_devices("trained")
    if jax.process_index() == 0:  # checkpoint 4 damaged: a truncated array file
        folder = os.path.join(workdir, "checkpoints", "4", "state", "d")
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "r+b") as f:
                f.truncate(os.path.getsize(os.path.join(folder, name)) // 2)
    multihost_utils.sync_global_devices("damaged")
    resumed = jax.device_get(train.train(config, workdir, records).params)
    if jax.process_index() == 0:
        leaves = jax.tree.leaves({"first": first, "resumed": resumed})
        np.savez(out, *leaves)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
