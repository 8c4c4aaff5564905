"""Every Python block of the README runs as written (a user copies them)."""

import importlib.util
import os
import re

import pytest

from handfit.detect import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as f:
    BLOCKS = re.findall(r"^```python\n(.*?)^```", f.read(), re.M | re.S)
HAVE_DETECTOR = importlib.util.find_spec("ai_edge_litert") is not None and all(
    (models.model_dir() / n).is_file() for n in models.FILES
)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[b.splitlines()[-1][:40] for b in BLOCKS])
def test_block_runs(code, tmp_path, monkeypatch):
    if "detect.hands" in code and not HAVE_DETECTOR:
        pytest.skip("needs pip install -e .[detect] and python main.py --mode=models")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
