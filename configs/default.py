"""Defaults for every handfit run; the other configs import this and change a few fields.

    python main.py --config=configs/default.py --mode=hands --workdir=runs/default

Every field can be overridden on the command line, e.g. ``--config.hand.side=left``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    # The hand model: a MANO file (MANO_RIGHT.pkl / MANO_LEFT.pkl / .npz), or ''
    # for handfit's open hand model (no licence needed).
    config.hand = ml_collections.ConfigDict()
    config.hand.model_path = ""
    config.hand.side = "right"

    # --mode=hands: pose the hand model and write meshes and a preview picture.
    config.hands = ml_collections.ConfigDict()
    config.hands.num_random = 4  # random poses (mano.sample_poses) and shapes (N(0, 1))
    config.hands.mesh_format = "obj"
    return config
