"""Background folders: an image PIL cannot or will not decode is named, not a crash."""

import fixtures_data as fx
import numpy as np
import pytest

from handfit.data import backgrounds
from handfit.errors import UserError


def test_an_unreadable_background_is_named(tmp_path):
    fx.write_huge_png(tmp_path / "huge.png")  # a decompression bomb to PIL
    folder = backgrounds.ImageFolder(tmp_path)
    with pytest.raises(UserError, match=rf"background image {tmp_path}/huge.png cannot be read"):
        folder(np.random.default_rng(0), 16)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UserError, match="huge.png cannot be read"):
        folder(np.random.default_rng(0), 16)
