"""The paper's setting: RHD + STB training at 224 x 224, ResNet-50, a 3-stage CPM.

    python main.py --config=configs/full.py --mode=train --workdir=runs/full
    python main.py --config=configs/full.py --mode=eval --workdir=runs/full

Tests on RHD, STB and Dexter+Object. Needs the downloaded datasets (see the README's
Datasets section); without them training stops with where to get and put them. Meant
for a GPU or TPU: one step at batch 32 takes minutes on a CPU.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.train = ("rhd", "stb")
    config.data.test = ("rhd", "stb", "dexter_object")
    config.data.image_size = 224
    config.data.heatmap_size = 32
    config.data.workers = 8
    config.model.backbone = "resnet50"
    config.model.cpm_stages = 3
    config.model.iterations = 3
    config.model.render_size = 56
    config.optim.learning_rate = 3e-4
    config.optim.warmup_steps = 1000
    config.train.batch_size = 32
    config.train.steps = 100_000  # about 45 epochs of RHD + STB (71,258 frames)
    config.train.checkpoint_every = 2000
    config.train.eval_every = 5000
    config.train.eval_batches = 20
    # Sec. 3.5: self-supervised augmentation after the first K epochs (K lost in the
    # paper's text: 20k steps = 9 epochs here).
    config.augment.enabled = True
    config.augment.start_step = 20_000
    return config
