"""The whole tree passes ruff (lint rules in pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest


def test_ruff_check_passes():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -r requirements-test.txt")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([ruff, "check", str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
