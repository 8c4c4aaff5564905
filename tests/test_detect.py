"""Tests of handfit.detect: MediaPipe's graph pieces (anchors, decoding, NMS, rects, crops),
the joint order, fetching the models, and (when the models are present) the whole detector."""

import hashlib
import importlib.util
import sys
import zipfile

import numpy as np
import pytest

from handfit import skeleton
from handfit.detect import graph, models
from handfit.detect.detector import Hand, _drop_duplicates

RNG = np.random.default_rng(0)


def test_anchors_follow_the_ssd_layout():
    anchors = graph.ssd_anchors()
    assert anchors.shape == (graph.NUM_ANCHORS, 2)
    # stride 8: 24 x 24 cells, 2 anchors each, row-major from the top-left cell
    np.testing.assert_allclose(anchors[:2], [[0.5 / 24, 0.5 / 24]] * 2)
    np.testing.assert_allclose(anchors[2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(anchors[24 * 2], [0.5 / 24, 1.5 / 24])
    # the three stride-16 layers share a 12 x 12 map: 6 anchors per cell
    first = 24 * 24 * 2
    np.testing.assert_allclose(anchors[first : first + 6], [[0.5 / 12, 0.5 / 12]] * 6)
    np.testing.assert_allclose(anchors[first + 6], [1.5 / 12, 0.5 / 12])
    np.testing.assert_allclose(anchors[-1], [11.5 / 12, 11.5 / 12])


def _raw_for(anchor, box, keypoints):
    """The palm model's 18 numbers that decode to ``box`` (x0, y0, x1, y1) and keypoints."""
    centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
    return np.concatenate(
        [(centre - anchor) * 192, size * 192, ((keypoints - anchor) * 192).ravel()]
    )


def test_decode_inverts_the_box_encoding_and_thresholds_scores():
    anchors = graph.ssd_anchors()
    raw = np.zeros((graph.NUM_ANCHORS, 18), np.float32)
    logits = np.full((graph.NUM_ANCHORS, 1), -5.0, np.float32)
    box = np.array([0.2, 0.3, 0.5, 0.7])
    kps = RNG.uniform(0.2, 0.7, (7, 2))
    raw[100] = _raw_for(anchors[100], box, kps)
    raw[1500] = _raw_for(anchors[1500], box + 0.1, kps + 0.1)
    logits[100], logits[1500], logits[7] = 2.0, 1000.0, 0.0  # 1000 is clipped to 100
    boxes, keypoints, scores = graph.decode_palms(raw, logits, anchors, min_score=0.5)
    # in anchor order: 7 (score exactly 0.5 is kept), 100, 1500
    np.testing.assert_allclose(scores, [0.5, 1 / (1 + np.exp(-2.0)), 1.0], rtol=1e-6)
    np.testing.assert_allclose(boxes[1], box, atol=1e-6)
    np.testing.assert_allclose(keypoints[1], kps, atol=1e-6)
    np.testing.assert_allclose(boxes[2], box + 0.1, atol=1e-6)
    assert len(graph.decode_palms(raw, logits, anchors, min_score=0.9)[2]) == 1


def test_weighted_nms_merges_overlaps_by_score():
    boxes = np.array(
        [[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0], [0.0, 0.6, 1.0, 1.6]],
        np.float32,
    )
    kps = np.repeat(boxes[:, None, :2], 7, axis=1)
    scores = np.array([0.9, 0.6, 0.95, 0.8], np.float32)
    out_boxes, out_kps, out_scores = graph.weighted_nms(boxes, kps, scores, 0.3)
    # best first; box 3 overlaps box 0 by IoU 0.25 (kept apart), box 1 by 0.82 (merged)
    np.testing.assert_allclose(out_scores, [0.95, 0.9, 0.8])
    np.testing.assert_allclose(out_boxes[0], boxes[2])
    merged = (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5
    np.testing.assert_allclose(out_boxes[1], merged, rtol=1e-6)
    np.testing.assert_allclose(out_kps[1, 3], merged[:2], rtol=1e-6)
    np.testing.assert_allclose(out_boxes[2], boxes[3])
    assert graph.weighted_nms(boxes[:0], kps[:0], scores[:0])[0].shape == (0, 4)


@pytest.mark.parametrize("rect", [graph.letterbox(300, 200), graph.tiles(300, 200, 2)[3]])
def test_palm_input_round_trip(rect):
    """A point of the image, found at crop pixel c of the palm input, maps back to itself."""
    w, h = 300, 200
    m = graph.crop_matrix(rect, w, h, graph.PALM_INPUT)
    point = np.array([120.0, 45.0]) if rect[2] > 1 else rect[:2] * (w, h) + (7.0, -11.0)
    crop = np.linalg.solve(m[:, :2], point - m[:, 2])  # crop pixels
    back = graph.roi_to_image(crop / graph.PALM_INPUT, rect) * (w, h)
    np.testing.assert_allclose(back, point, atol=1e-4)


def test_letterbox_pads_the_shorter_side():
    # 300 x 200: the square input's rows above and below the image are padding
    np.testing.assert_allclose(graph.letterbox(300, 200), [0.5, 0.5, 1.0, 1.5, 0.0])


@pytest.mark.parametrize(
    "width, height, count, n",
    [(1280, 720, 2, 6), (640, 640, 2, 9), (810, 1080, 3, 20), (640, 480, 1, 0)],
)
def test_tiles_are_squares_that_overlap_and_cover_the_image(width, height, count, n):
    rois = graph.tiles(width, height, count)
    assert rois.shape == (n, 5)
    if not n:
        return
    side = min(max(width, height) / count, min(width, height))
    np.testing.assert_allclose(
        rois[:, 2:] * (width, height, 1), np.tile([side, side, 0], (n, 1)), rtol=1e-6
    )
    x0 = rois[:, 0] * width - side / 2
    y0 = rois[:, 1] * height - side / 2
    assert x0.min() > -1e-3 and y0.min() > -1e-3
    assert (x0 + side).max() < width + 1e-3 and (y0 + side).max() < height + 1e-3
    # neighbours overlap by at least half a tile: any palm up to side / 2 wide lies wholly
    # inside some tile
    for start, length in ((x0, width), (y0, height)):
        steps = np.diff(np.unique(np.round(start, 3)))
        assert np.all(steps <= side / 2 + 1e-3), steps
        assert np.isclose(start.max() + side, length, atol=1e-3) if len(steps) else True
    palms = np.array([width, height]) * RNG.uniform(0, 1, (50, 2))  # centres of such palms
    palms = np.clip(palms, side / 4, np.array([width, height]) - side / 4)
    offsets = np.abs(rois[None, :, :2] * (width, height) - palms[:, None])
    assert np.all(np.any(np.all(offsets <= side / 4 + 1e-3, -1), -1))


@pytest.mark.parametrize("width, height", [(320, 320), (640, 360)])
def test_landmark_projection_is_the_crops_own_map(width, height):
    """A landmark the model puts at crop pixel (j, i) lands where the crop sampled it."""
    rect = np.array([0.4, 0.55, 0.3 * height / width, 0.3, 0.7])
    m = graph.crop_matrix(rect, width, height, graph.LANDMARK_INPUT)
    crop_xy = RNG.uniform(0, graph.LANDMARK_INPUT, (21, 2))
    raw = np.concatenate([crop_xy, RNG.normal(size=(21, 1))], -1)
    lm = graph.project_landmarks(raw.ravel(), rect, width, height)
    expected = crop_xy @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(lm[:, :2] * (width, height), expected, atol=1e-3)
    # z: crop pixels / 224 / 0.4 times the rect's normalised width
    np.testing.assert_allclose(lm[:, 2], raw[:, 2] / 224 / 0.4 * rect[2], rtol=1e-5)
    # world landmarks turn with the crop about the image's z axis
    world = graph.project_world(np.tile([0.0, -0.05, 0.01], 21), rect)
    np.testing.assert_allclose(world[0], [0.05 * np.sin(0.7), -0.05 * np.cos(0.7), 0.01], atol=1e-7)


def test_palm_crop_points_from_wrist_to_fingers():
    w, h = 640, 480
    wrist, mcp = np.array([300.0, 300.0]), np.array([360.0, 240.0])  # fingers up and right
    kps = np.zeros((7, 2))
    kps[0], kps[2] = wrist / (w, h), mcp / (w, h)
    box = np.array([270, 220, 370, 320]) / np.array([w, h, w, h])
    rect = graph.detection_to_rect(box, kps, w, h)
    np.testing.assert_allclose(rect[4], np.pi / 4, atol=1e-6)
    m = graph.crop_matrix(rect, w, h, 224)
    up = m[:, :2] @ np.array([0.0, -1.0])  # the crop's up direction in the image
    direction = (mcp - wrist) / np.linalg.norm(mcp - wrist)
    np.testing.assert_allclose(up / np.linalg.norm(up), direction, atol=1e-6)
    # square in pixels, 2.6 x the box's longer side, moved half a box towards the fingers
    np.testing.assert_allclose(rect[2] * w, rect[3] * h, rtol=1e-6)
    np.testing.assert_allclose(rect[2] * w, 2.6 * 100, rtol=1e-5)
    centre = np.array([320.0, 270.0]) + 0.5 * 100 * direction
    np.testing.assert_allclose(rect[:2] * (w, h), centre, atol=1e-3)


def test_landmark_rect_recovers_a_rotated_hand():
    """Landmarks of an upright hand, turned by 0.5 rad and moved: the rect turns with them."""
    w, h = 500, 400
    upright = np.zeros((21, 2))
    upright[0] = [0, 40]  # wrist below, fingers up
    for finger, x in zip(range(5), (-30, -15, 0, 15, 30), strict=True):
        for k in range(4):
            upright[1 + 4 * finger + k] = [x, 10 - 20 * k]
    angle = 0.5
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = upright @ rot.T + (250, 200)
    rect = graph.landmarks_to_rect(pts / (w, h), w, h)
    np.testing.assert_allclose(rect[4], angle, atol=1e-6)
    np.testing.assert_allclose(rect[2] * w, rect[3] * h, rtol=1e-6)
    # the subset's box in the hand's frame is 60 x 60 (x: -30..30, y: -30..40 -> 70): 2 x 70
    np.testing.assert_allclose(rect[3] * h, 2 * 70, rtol=1e-5)


def test_warp_samples_bilinearly_with_both_borders():
    image = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    np.testing.assert_allclose(graph.warp(image, identity, 6, "zero"), image[:, :6] / 255.0)
    half = np.array([[1.0, 0, 0.5], [0, 1.0, 0]])
    expected = np.round((image[:4, :4].astype(float) + image[:4, 1:5]) / 2) / 255
    np.testing.assert_allclose(graph.warp(image, half, 4, "zero"), expected, atol=1e-6)
    outside = np.array([[1.0, 0, -2.0], [0, 1.0, -2.0]])
    assert np.all(graph.warp(image, outside, 2, "zero") == 0)
    np.testing.assert_allclose(
        graph.warp(image, outside, 2, "replicate"), np.broadcast_to(image[0, 0] / 255.0, (2, 2, 3))
    )


def test_mediapipe_landmarks_are_in_canonical_order():
    # mediapipe.python.solutions.hands.HandLandmark, in its order
    names = ["WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP"] + [
        f"{f}_{j}"
        for f in ("INDEX_FINGER", "MIDDLE_FINGER", "RING_FINGER", "PINKY")
        for j in ("MCP", "PIP", "DIP", "TIP")
    ]
    # handfit names the thumb's joints by position along the finger, from the base
    thumb = {
        "THUMB_CMC": "thumb_mcp",
        "THUMB_MCP": "thumb_pip",
        "THUMB_IP": "thumb_dip",
        "THUMB_TIP": "thumb_tip",
    }

    def handfit_name(name):
        if name in thumb:
            return thumb[name]
        return name.lower().replace("_finger", "")

    order = np.asarray(graph.MEDIAPIPE_TO_CANONICAL)
    assert [handfit_name(names[i]) for i in order] == list(skeleton.JOINT_NAMES)


def _hand(landmarks):
    z = np.zeros(1)
    return Hand("right", 0.9, 0.9, 0.9, z, z, landmarks, z, z)


def test_duplicate_hands_are_dropped():
    a = RNG.uniform(100, 200, (21, 2))
    hands = [_hand(a), _hand(a + 5), _hand(a + 300)]
    kept = _drop_duplicates(hands)
    assert [h.landmarks[0, 0] for h in kept] == [a[0, 0], a[0, 0] + 300]


def _fake_wheel(path, contents):
    with zipfile.ZipFile(path, "w") as z:
        for name, (inner, _) in models.FILES.items():
            z.writestr(inner, contents[name])
        z.writestr(models.LICENSE_IN_WHEEL, "Apache License 2.0")


def test_extract_checks_sha256_and_records_the_source(tmp_path, monkeypatch):
    contents = {name: f"model {name}".encode() for name in models.FILES}
    good = {
        n: (inner, hashlib.sha256(contents[n]).hexdigest())
        for n, (inner, _) in models.FILES.items()
    }
    _fake_wheel(tmp_path / models.WHEEL, contents)
    # the real checksums refuse the fake files, and leave nothing behind
    with pytest.raises(ValueError, match="sha256"):
        models.extract(tmp_path / models.WHEEL, tmp_path / "bad")
    assert not list((tmp_path / "bad").glob("*.tflite"))
    monkeypatch.setattr(models, "FILES", good)
    out = models.extract(tmp_path / models.WHEEL, tmp_path / "cache")
    assert {p.read_bytes() for p in out.values()} == set(contents.values())
    record = (tmp_path / "cache" / "models.json").read_text()
    assert "mediapipe==0.10.21" in record and "Apache-2.0" in record
    assert (tmp_path / "cache" / "LICENSE").read_text() == "Apache License 2.0"
    assert models.paths(str(tmp_path / "cache")) == out


def test_missing_models_print_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path / "env"))
    assert models.model_dir() == tmp_path / "env"
    assert models.model_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
    with pytest.raises(FileNotFoundError, match="python main.py --mode=models"):
        models.paths()


HAVE_MODELS = importlib.util.find_spec("ai_edge_litert") is not None and all(
    (models.model_dir() / n).is_file() for n in models.FILES
)


@pytest.mark.skipif(not HAVE_MODELS, reason="needs pip install -e .[detect] and --mode=models")
def test_detector_finds_a_rendered_hand():
    from handfit import detect
    from handfit.data import synthetic

    spec = synthetic.SyntheticSpec(
        image_size=320, fill=0.4, focal=1.5, occluder_prob=0.0, rotation_deg=(40.0, 40.0, 180.0)
    )
    record = synthetic.generate(spec, "test", 11, 1)[0]
    image = np.asarray(record["image"])
    found = detect.hands(image)
    assert len(found) == 1
    hand = found[0]
    assert hand.side == "right" and hand.presence > 0.5 and hand.score > 0.5
    err = np.linalg.norm(hand.landmarks - record["joints2d"], axis=-1)
    assert np.median(err) < 8.0, err  # the open hand is not a real hand: a few pixels off
    # the world landmarks are metric and in the camera's axes: bones as long and as turned
    # as the rendered hand's (cosine of the bone directions)
    true = record["joints3d"]
    bones = np.array(skeleton.BONES)
    a = hand.world[bones[:, 1]] - hand.world[bones[:, 0]]
    b = true[bones[:, 1]] - true[bones[:, 0]]
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert np.median(cos) > 0.8, cos
    assert 0.5 < np.sum(np.linalg.norm(a, axis=-1)) / np.sum(np.linalg.norm(b, axis=-1)) < 1.5
    mirrored = detect.hands(np.ascontiguousarray(image[:, ::-1]))
    assert [h.side for h in mirrored] == ["left"]


def test_missing_runtime_names_the_extra(tmp_path, monkeypatch):
    from handfit import detect

    for name in models.FILES:
        (tmp_path / name).write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[detect\]"):
        detect.Detector({"model_dir": str(tmp_path)})


@pytest.mark.skipif(not HAVE_MODELS, reason="needs pip install -e .[detect] and --mode=models")
def test_tiles_find_a_hand_too_small_for_the_whole_image():
    """The rendered hand at a fifth of a 1600 x 1200 image: the palm detector's 192 x 192
    view of the whole image misses it; with tiles it is found, with its landmarks in place."""
    from handfit import detect
    from handfit.data import synthetic

    spec = synthetic.SyntheticSpec(
        image_size=320, fill=0.4, focal=1.5, occluder_prob=0.0, rotation_deg=(40.0, 40.0, 180.0)
    )
    record = synthetic.generate(spec, "test", 11, 1)[0]
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    canvas[700:1020, 900:1220] = record["image"]
    assert detect.Detector({"tiles": 0})(canvas) == []
    (hand,) = detect.Detector({"tiles": 2})(canvas)
    err = np.linalg.norm(hand.landmarks - (record["joints2d"] + (900, 700)), axis=-1)
    assert hand.side == "right" and np.median(err) < 8.0, err
