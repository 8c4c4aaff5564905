"""The synthetic default trained longer: about 35-50 minutes on a 2-core CPU.

    python main.py --config=configs/synthetic_long.py --mode=train --workdir=runs/synthetic_long
    python main.py --config=configs/synthetic_long.py --mode=eval --workdir=runs/synthetic_long

The network and losses of ``configs/synthetic.py``; 3x the training hands (18,000,
about 4 minutes to render) and 3x the steps. The test split is the default's (same
spec seed, views and size), so the two tables compare directly.
"""

import ml_collections

from configs import synthetic


def get_config() -> ml_collections.ConfigDict:
    config = synthetic.get_config()
    config.data.synthetic.num_train = 18_000
    config.train.steps = 13_500
    config.train.checkpoint_every = 1500
    config.train.eval_every = 2700
    return config
