"""handfit's command line: ``python main.py --config=configs/<name>.py --mode=<mode>``.

Modes: ``hands`` (pose the configured hand model; write meshes and a preview),
``prepare`` (build the datasets the config uses; a no-op when already built).
"""

from absl import app, flags
from ml_collections import config_flags

from handfit import demo

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Configuration file.")
flags.DEFINE_string("workdir", "runs/default", "Where outputs (and later checkpoints) go.")
flags.DEFINE_enum("mode", "hands", ["hands", "prepare"], "What to run.")


def _prepare(config, workdir):
    from handfit.data import builders

    builders.prepare_config(config)


MODES = {"hands": demo.pose_hands, "prepare": _prepare}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
