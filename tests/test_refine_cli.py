"""Tests of handfit.refine_cli (--mode=refine): a folder of images, keypoint JSONs and masks."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from PIL import Image

from configs import default
from handfit import geometry, mano, params, refine_cli, render, viz
from handfit.params import MeshParams

SIZE = 64


def _config(folder, steps=20):
    config = default.get_config()
    config.refine.input = str(folder)
    config.refine.steps = steps
    config.refine.render_size = 32
    config.refine.budget = 8192
    config.refine.fit_starts = 1
    config.detect.enabled = False  # images without keypoints are skipped (and listed)
    return config


@pytest.fixture(scope="module")
def scene():
    """A rendered open hand: (image uint8 [H, W, 3], mask, keypoints [21, 2], K)."""
    model = mano.open_hand()
    quat = geometry.axis_angle_to_quaternion(jnp.array([[0.3, -0.4, 0.5]]))
    truth = MeshParams.initial(1, model)._replace(quat=quat - jnp.array([1.0, 0, 0, 0]))
    f = 1.6 * SIZE
    camera = render.perspective_camera(f, f, SIZE / 2, SIZE / 2, SIZE, SIZE)
    out = params.mesh(truth, model)
    mask = np.asarray(render.rasterize(out.vertices, model.faces, camera).mask[0])
    image = np.where(mask[..., None] > 0, [200, 150, 120], [30, 60, 40]).astype(np.uint8)
    kp = np.asarray(render.project(out.joints, camera)[0])
    k = [[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1]]
    return image, mask, kp, k


def _write_input(folder, scene, **json_fields):
    image, mask, kp, k = scene
    folder.mkdir(exist_ok=True)
    Image.fromarray(image).save(folder / "hand.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "hand_mask.png")
    Image.fromarray(image).save(folder / "no_keypoints.jpg")
    record = {"keypoints": kp.tolist(), "K": k, **json_fields}
    (folder / "hand.json").write_text(json.dumps(record))
    return folder


def test_run_writes_mesh_parameters_and_overlay(tmp_path, scene):
    folder = _write_input(tmp_path / "in", scene, visibility=[1] * 20 + [0])
    written = refine_cli.run(_config(folder), str(tmp_path / "work"))
    out = tmp_path / "work" / "refine"
    assert sorted(written) == sorted(
        [out / "hand_hand0.obj", out / "hand.glb", out / "hand.json", out / "hand_overlay.png"]
    )
    mesh = trimesh.load(out / "hand_hand0.obj", process=False)
    assert mesh.vertices.shape == (mano.open_hand().num_vertices, 3)
    scene_glb = trimesh.load(out / "hand.glb")
    (glb,) = scene_glb.geometry.values()
    # glTF axes: turned 180 degrees about x, so the faces keep their winding
    np.testing.assert_allclose(glb.vertices, mesh.vertices * [1, -1, -1], atol=1e-5)
    np.testing.assert_array_equal(glb.faces, mesh.faces)
    record = json.loads((out / "hand.json").read_text())
    assert len(record["hands"]) == 1
    hand = record["hands"][0]
    assert hand["side"] == "right" and hand["source"] == "keypoints" and not hand["warnings"]
    assert [len(hand["params"][g]) for g, _ in params.SIZES] == [n for _, n in params.SIZES]
    # the fit lands on the keypoints it was given (the 21st was marked invisible)
    err = np.linalg.norm(np.asarray(hand["joints2d"])[:20] - scene[2][:20], axis=-1)
    assert np.mean(err) < 4.0, err
    np.testing.assert_allclose(hand["error2d_px"], np.mean(err), rtol=1e-4)
    # the mesh in the .obj projects where the JSON says
    uv = render.project(
        jnp.asarray(mesh.vertices[None], jnp.float32),
        render.perspective_camera(
            *(record["camera"][k] for k in ("fx", "fy", "cx", "cy")), SIZE, SIZE
        ),
    )
    assert np.all(np.isfinite(np.asarray(uv)))
    overlay = np.asarray(Image.open(out / "hand_overlay.png"))
    assert overlay.shape == (SIZE, SIZE, 3)
    assert not np.array_equal(overlay, scene[0])
    assert (folder / "hand.json").read_text() != (out / "hand.json").read_text()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"keypoints": [[1, 2]] * 20}, r"hand\.json: keypoints must be 21"),
        ({"visibility": [1] * 5}, r"hand\.json: visibility must have 21"),
        ({"K": [[1, 0], [0, 1]]}, r"hand\.json: K must be a 3x3"),
        ({"keypoints": [[float("nan"), 1.0]] * 21}, r"hand\.json: visible keypoints"),
    ],
)
def test_bad_keypoint_files_are_named(tmp_path, scene, fields, message):
    folder = _write_input(tmp_path / "in", scene)
    record = json.loads((folder / "hand.json").read_text())
    record.update(fields)
    (folder / "hand.json").write_text(json.dumps(record))
    with pytest.raises(refine_cli.FailedImages, match=message):
        refine_cli.run(_config(folder), str(tmp_path / "work"))


def test_missing_input_is_explained(tmp_path, scene):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        refine_cli.run(_config(tmp_path / "nowhere"), str(tmp_path / "work"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image"):
        refine_cli.run(_config(tmp_path / "empty"), str(tmp_path / "work"))
    folder = _write_input(tmp_path / "in", scene)
    (folder / "hand.json").write_text("{not json")
    with pytest.raises(refine_cli.FailedImages, match=r"hand\.json: not a readable JSON"):
        refine_cli.run(_config(folder), str(tmp_path / "work"))


def test_inputs_are_never_written_over(tmp_path, scene):
    work = tmp_path / "work"
    work.mkdir()
    folder = _write_input(work / "refine", scene)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match="write over the inputs"):
        refine_cli.run(_config(folder), str(work))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_every_image_is_processed_and_failures_are_listed(tmp_path, scene):
    folder = _write_input(tmp_path / "in", scene)
    Image.fromarray(scene[0]).save(folder / "a_bad.png")
    (folder / "a_bad.json").write_text(json.dumps({"keypoints": [[1, 2]] * 5}))
    # two images beside one JSON: it cannot say which it belongs to
    Image.fromarray(scene[0]).save(folder / "twin.png")
    Image.fromarray(scene[0]).save(folder / "twin.jpg")
    (folder / "twin.json").write_text((folder / "hand.json").read_text())
    with pytest.raises(refine_cli.FailedImages) as failure:
        refine_cli.run(_config(folder, steps=2), str(tmp_path / "work"))
    message = str(failure.value)
    assert "3 of 5 images failed" in message and "a_bad.png" in message
    assert "twin.json is beside ['twin.jpg', 'twin.png']" in message
    # the good image after the bad one was still fitted
    assert (tmp_path / "work" / "refine" / "hand.json").is_file()
    inputs = refine_cli._Inputs(folder)
    assert [inputs.out_name(p) for p in inputs.images] == [
        "a_bad",
        "hand",
        "no_keypoints",
        "twin.jpg",
        "twin.png",
    ]


@pytest.mark.parametrize(
    "change, warning",
    [
        ({"visibility": [0] * 21}, "no visible joints"),
        ({"shift": 1e8}, "far outside the image"),
    ],
)
def test_fits_that_cannot_be_trusted_are_flagged(tmp_path, scene, capsys, change, warning):
    image, mask, kp, k = scene
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image).save(folder / "hand.png")
    record = {"keypoints": (kp + change.get("shift", 0.0)).tolist(), "K": k}
    record.update({n: v for n, v in change.items() if n != "shift"})
    (folder / "hand.json").write_text(json.dumps(record))
    refine_cli.run(_config(folder, steps=2), str(tmp_path / "work"))
    hand = json.loads((tmp_path / "work" / "refine" / "hand.json").read_text())["hands"][0]
    assert any(warning in w for w in hand["warnings"]), hand["warnings"]
    assert f"WARNING: {hand['warnings'][0]}" in capsys.readouterr().out
    if "shift" in change:
        assert len(hand["warnings"]) >= 2  # also: the fit does not match / behind the camera
    else:
        assert hand["error2d_px"] is None


def test_left_hands_use_a_left_file_beside_the_right_one(tmp_path):
    config = _config(tmp_path)
    mano.save_npz(mano.open_hand(), tmp_path / "MANO_RIGHT.npz")
    config.hand.model_path = str(tmp_path / "MANO_RIGHT.npz")
    mirrored = refine_cli._hand_model(config, "left")
    assert mirrored.side == "left" and "mirrored" in mirrored.name
    marked = mano.open_hand("left")  # a left file told apart by a shifted template
    marked = dataclasses.replace(marked, v_template=np.asarray(marked.v_template) + 0.01)
    mano.save_npz(marked, tmp_path / "MANO_LEFT.npz")
    left = refine_cli._hand_model(config, "left")
    assert left.side == "left"
    np.testing.assert_allclose(left.v_template, marked.v_template, atol=1e-6)
    assert refine_cli._hand_model(config, "right").side == "right"


def test_overlay_markers_leave_a_small_hand_visible():
    """A hand 40 px wide in a 1000 px photo: its 21 keypoint circles cover a small part of
    its box instead of hiding it (markers are sized by the hand, not only by the image)."""
    grey = np.full((1000, 1000, 3), 128, np.uint8)
    grid = np.stack(np.meshgrid(np.linspace(0, 40, 5), np.linspace(0, 40, 5)), -1)
    kp = (500 + grid.reshape(-1, 2)[:21]).astype(np.float32)
    hand = viz.OverlayHand(np.zeros((0, 3)), np.zeros((0, 3), int), kp, kp, np.ones(21))
    camera = render.perspective_camera(1200.0, 1200.0, 500.0, 500.0, 1000, 1000)
    out = np.asarray(viz.hands_overlay(grey, camera, [hand]))
    box = out[495:546, 495:546].reshape(-1, 3)
    red = np.all(box == (230, 30, 30), -1)
    assert 0 < red.mean() < 0.25, red.mean()
