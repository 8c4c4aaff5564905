"""handfit's command line: ``python main.py --config=configs/<name>.py --mode=<mode>``.

Modes: ``train`` (prepare the config's data, train, checkpoint into the workdir),
``eval`` (score the workdir's latest checkpoint on the config's test sets, write a
report), ``refine`` (fit hands to the images and 2D keypoints of a folder),
``prepare`` (build the config's datasets; a no-op when already built), ``hands``
(pose the configured hand model; write meshes and a preview), ``models`` (fetch the hand
detector's models).

A user error (a bad flag, config file, config field or value, a missing or bad file)
prints one line, ``main.py: error: ...``, and exits with status 2; anything else keeps
its traceback.
"""

import errno
import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

FLAGS = flags.FLAGS
DEFAULT = "configs/default.py"
# mode -> (module, function(config, workdir)); imported only when chosen.
MODES = {
    "train": ("handfit.train", "train_and_evaluate"),
    "eval": ("handfit.evaluate", "evaluate"),
    "refine": ("handfit.refine_cli", "run"),
    "prepare": ("handfit.data.builders", "prepare_config"),
    "hands": ("handfit.demo", "pose_hands"),
    "models": ("handfit.detect.models", "fetch"),
}


def fail(message: str) -> None:
    """Prints ``main.py: error: <message>`` to stderr and exits with status 2."""
    print(f"main.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def _unknown_field(argv: list[str], error: BaseException) -> str:
    """The message for a ``--config.<path>=`` override naming a field the config lacks."""
    # ConfigDict raises KeyError("'name'") or KeyError("'name'\nDid you mean ...?").
    raw = (error.__context__ or error).args[0] if (error.__context__ or error).args else ""
    key, _, hint = str(raw).partition("\n")
    key, hint = key.strip("'\""), f" ({hint})" if hint else ""
    for arg in argv:
        path = arg.partition("=")[0].removeprefix("--config.")
        if not (arg.startswith("--config.") and key in path.split(".")):
            continue
        section = path.rpartition(".")[0]
        files = [a.partition("=")[2] for a in argv if a.startswith("--config=")]
        try:  # the config as its file gives it (absl stopped before it was set)
            node = ConfigFileFlagParser(name="config").parse(files[-1] if files else DEFAULT)
            for part in filter(None, section.split(".")):
                node = node[part]
            fields = ", ".join(sorted(node.keys()))
        except (AttributeError, KeyError, TypeError, OSError):  # the section is unknown too
            return f"{arg}: the config has no field {path!r}{hint}"
        where = f"config.{section}" if section else "the config"
        return f"{arg}: the config has no field {path!r}{hint}; {where} has: {fields}"
    return f"unknown config field {key!r}"


def _flag_message(error: BaseException) -> str:
    """One line from a flag-parsing error (a config file's own error arrives as a traceback,
    a missing one as the paths tried: the last line says what failed)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if isinstance(error, OSError):
        return f"--config: {lines[-1]}"
    if "Traceback (most recent call last):" in lines:
        return f"{lines[0].split(': Error whilst')[0]}: {lines[-1]}"
    return lines[0]


try:  # the default config's overrides are applied here, when it is defined
    config_flags.DEFINE_config_file("config", DEFAULT, "Configuration file.")
except (AttributeError, KeyError) as e:
    fail(_unknown_field(sys.argv, e))
flags.DEFINE_string("workdir", "runs/default", "Checkpoints, metrics and reports go here.")
flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "refine", "prepare", "hands", "models"], "What to run."
)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a bad flag, config file or config override fails in one line."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # a config file that failed to load raises on first use
    except (AttributeError, KeyError) as e:  # an override of a field the config lacks
        fail(_unknown_field(argv, e))
    except (flags.Error, OSError, ValueError, TypeError) as e:
        fail(_flag_message(e))
    if len(rest) > 1:
        fail(f"unexpected arguments {rest[1:]}: give flags as --name=value")
    return rest


def main(argv):
    from handfit import config_check
    from handfit.errors import UserError

    if not FLAGS["verbosity"].present:  # orbax and TFDS log every step at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        config_check.validate(FLAGS.config)
        module, function = MODES[FLAGS.mode]
        run = getattr(importlib.import_module(module), function)
        if FLAGS.mode == "prepare":
            run(FLAGS.config)
        else:
            run(FLAGS.config, FLAGS.workdir)
    except (UserError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        fail(str(e))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        fail(f"{e}: free space and rerun the same command (training resumes where it stopped)")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
