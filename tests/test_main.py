"""The command line: a user error is one line and exit status 2; a bug keeps its traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, code=None):
    """Runs main.py (or ``code`` with main importable) in the repository; returns the result."""
    command = [sys.executable, "-c", code] if code else [sys.executable, "main.py"]
    return subprocess.run(
        [*command, "--mode=hands", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        # An unknown field: three chained tracebacks before.
        (
            ["--config=configs/tiny.py", "--config.train.nosuch=3"],
            "--config.train.nosuch=3: the config has no field 'train.nosuch'; "
            "config.train has: batch_size, checkpoint_every",
        ),
        (
            ["--config.model.cpm_widht=3"],
            "--config.model.cpm_widht=3: the config has no field "
            "'model.cpm_widht' (Did you mean \"cpm_width\" instead",
        ),  # in the default config
        (["--config.train.steps=ten"], "flag --config.train.steps=ten: invalid literal for int()"),
        (["--config=configs/nope.py"], "--config: [Errno 2] No such file or directory"),
        # Out of range: a ZeroDivisionError after compiling, in --mode=train.
        (
            ["--config.train.checkpoint_every=0"],
            "config.train.checkpoint_every=0; expected an integer >= 1",
        ),
    ],
)
def test_a_user_error_is_one_line_and_status_2(flags, message, tmp_path):
    run = _main(*flags, f"--workdir={tmp_path}")
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"main.py: error: {message}"), run.stderr


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    code = (
        "import sys, main\n"
        "from absl import app\n"
        "main.MODES['hands'] = ('builtins', 'len')  # len(config, workdir): a TypeError\n"
        "app.run(main.main, argv=['main.py'] + sys.argv[1:], flags_parser=main.parse_flags)\n"
    )
    run = _main("--config=configs/tiny.py", f"--workdir={tmp_path}", code=code)
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr and "TypeError" in run.stderr


def test_refine_folder_failures_are_listed_without_a_traceback(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "hand.json").write_text("{not json")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(folder / "hand.png")
    run = _main("--mode=refine", f"--config.refine.input={folder}", f"--workdir={tmp_path}/w")
    assert run.returncode == 2, run.stderr
    assert "main.py: error: 1 of 1 images failed" in run.stderr
    assert "hand.json: not a readable JSON file" in run.stderr
    assert "Traceback" not in run.stderr
