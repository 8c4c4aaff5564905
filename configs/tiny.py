"""A tiny model on a tiny synthetic set, for tests and smoke runs: seconds per step on a CPU.

python main.py --config=configs/tiny.py --mode=train --workdir=runs/tiny
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.image_size = 32
    config.data.heatmap_size = 8
    config.data.synthetic.num_train = 16
    config.data.synthetic.num_test = 8
    config.data.synthetic.image_size = 32
    config.data.synthetic.occluder_prob = 0.0
    config.model.backbone = "resnet_tiny"
    config.model.backbone_width = 8
    config.model.cpm_input = "stride4"  # 8 x 8 at 32², the heat maps' grid
    config.model.mesh_hidden = (64,)
    config.model.cpm_stages = 2
    config.model.cpm_width = 8
    config.model.cpm_kernel = 3
    config.model.cpm_depth = 2
    config.model.iterations = 1
    config.model.render_size = 16
    config.model.render_budget = 4096
    config.model.sigma = 0.03
    config.loss.weights.heatmap = 100.0
    config.loss.weights.keypoints = 1.0
    config.loss.weights.shape = 0.2
    config.loss.weights.projection = 1.0
    config.optim.warmup_steps = 0
    config.train.steps = 4
    config.train.batch_size = 4
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.eval_every = 2
    config.train.eval_batches = 1
    return config
