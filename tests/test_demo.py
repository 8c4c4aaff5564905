"""--mode=hands: meshes and a preview of the configured hand model."""

import numpy as np
import trimesh

from configs import default
from handfit import demo, mano


def test_pose_hands_writes_loadable_meshes_and_a_preview(tmp_path, capsys):
    config = default.get_config()
    config.hands.num_random = 2
    written = demo.pose_hands(config, str(tmp_path))
    names = sorted(p.name for p in written)
    assert names == ["mean.obj", "preview.png", "random0.obj", "random1.obj", "rest.obj"]
    model = mano.open_hand()
    rest = trimesh.load(tmp_path / "hands" / "rest.obj", process=False)
    np.testing.assert_allclose(rest.vertices, model.v_template, atol=1e-5)
    random0 = trimesh.load(tmp_path / "hands" / "random0.obj", process=False)
    assert len(random0.vertices) == model.num_vertices
    assert not np.allclose(random0.vertices, rest.vertices, atol=1e-3)
    assert (tmp_path / "hands" / "preview.png").stat().st_size > 10_000
    assert "handfit open hand v1" in capsys.readouterr().out
