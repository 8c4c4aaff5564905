"""handfit's command line: ``python main.py --config=configs/<name>.py --mode=<mode>``.

Modes: ``train`` (prepare the config's data, train, checkpoint into the workdir),
``eval`` (score the workdir's latest checkpoint on the config's test sets, write a
report), ``refine`` (fit hands to the images and 2D keypoints of a folder),
``prepare`` (build the config's datasets; a no-op when already built), ``hands``
(pose the configured hand model; write meshes and a preview), ``models`` (fetch the hand
detector's models).
"""

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Configuration file.")
flags.DEFINE_string("workdir", "runs/default", "Checkpoints, metrics and reports go here.")
flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "refine", "prepare", "hands", "models"], "What to run."
)

# mode -> (module, function(config, workdir)); imported only when chosen.
MODES = {
    "train": ("handfit.train", "train_and_evaluate"),
    "eval": ("handfit.evaluate", "evaluate"),
    "refine": ("handfit.refine_cli", "run"),
    "prepare": ("handfit.data.builders", "prepare_config"),
    "hands": ("handfit.demo", "pose_hands"),
    "models": ("handfit.detect.models", "fetch"),
}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:  # orbax and TFDS log every step at INFO
        logging.set_verbosity(logging.WARNING)
    module, function = MODES[FLAGS.mode]
    run = getattr(importlib.import_module(module), function)
    from handfit.data.example import DatasetNotFoundError

    try:
        if FLAGS.mode == "prepare":
            run(FLAGS.config)
        else:
            run(FLAGS.config, FLAGS.workdir)
    except DatasetNotFoundError as e:  # a dataset to download by hand: say how, no traceback
        print(f"\n{e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
