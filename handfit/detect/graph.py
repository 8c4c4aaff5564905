"""What MediaPipe's hand graph does around its two models, in NumPy.

Every value below is read from the graphs inside the ``mediapipe==0.10.21`` wheel (the
subgraphs ``PalmDetectionCpu``, ``PalmDetectionDetectionToRoi``, ``HandLandmarkCpu`` and
``HandLandmarkLandmarksToRoi`` are compiled into ``mediapipe/python/_framework_bindings``;
``hand_landmark_tracking_cpu.binarypb`` ties them together), and the calculators follow
MediaPipe's C++ sources (``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``,
``NonMaxSuppressionCalculator``, ``DetectionsToRectsCalculator``,
``RectTransformationCalculator``, ``ImageToTensorCalculator``'s OpenCV converter,
``LandmarkProjectionCalculator``, ``WorldLandmarkProjectionCalculator``,
``HandLandmarksToRectCalculator``).

Coordinates: as MediaPipe, boxes and rects are *normalised* by the image's width and height,
and a normalised x times the width is a position in OpenCV's pixel convention (the centre of
pixel column c at x = c). handfit's convention puts that centre at c + 0.5:
``to_handfit_pixels`` converts. A rect is ``[x_center, y_center, width, height, rotation]``
(normalised, rotation in radians, clockwise on screen since y points down).
"""

from __future__ import annotations

import numpy as np

# PalmDetectionCpu: ImageToTensorCalculator (192 x 192, keep_aspect_ratio, zero border).
PALM_INPUT = 192
# SsdAnchorsCalculator options of palm_detection_full.
ANCHOR_STRIDES = (8, 16, 16, 16)
ANCHOR_MIN_SCALE, ANCHOR_MAX_SCALE = 0.1484375, 0.75
ANCHOR_OFFSET = 0.5
NUM_ANCHORS = 2016
# TensorsToDetectionsCalculator: 18 numbers per box (x, y, w, h, 7 keypoints x 2), scaled by
# 192, scores sigmoid(clip(raw, +-100)) kept from 0.5 (min_detection_confidence).
BOX_SCALE = 192.0
NUM_PALM_KEYPOINTS = 7
SCORE_CLIP = 100.0
# NonMaxSuppressionCalculator: weighted, intersection over union, 0.3.
NMS_IOU = 0.3
# PalmDetectionDetectionToRoi: rotation from keypoint 0 (wrist centre) to keypoint 2 (middle
# finger MCP), target 90 degrees; RectTransformationCalculator scale 2.6, shift_y -0.5,
# square_long.
PALM_ROTATION_KEYPOINTS = (0, 2)
PALM_RECT = dict(scale=2.6, shift_y=-0.5)
# HandLandmarkCpu: ImageToTensorCalculator 224 x 224 (replicated border); landmarks in
# crop pixels, z divided by 224 and by normalize_z 0.4.
LANDMARK_INPUT = 224
LANDMARK_NORMALIZE_Z = 0.4
# HandLandmarkLandmarksToRoi: HandLandmarksToRectCalculator on the wrist and the MCP/PIP
# joints, rotation from the wrist to the mean of ((index MCP + ring MCP) / 2, middle MCP);
# RectTransformationCalculator scale 2.0, shift_y -0.1, square_long.
LANDMARK_RECT_SUBSET = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
LANDMARK_RECT = dict(scale=2.0, shift_y=-0.1)
# MediaPipe's 21 landmarks (mediapipe.python.solutions.hands.HandLandmark) are handfit's
# canonical order already: wrist, then thumb CMC, MCP, IP, tip (handfit: thumb mcp, pip,
# dip, tip), then index, middle, ring and pinky MCP, PIP, DIP, tip.
MEDIAPIPE_TO_CANONICAL = tuple(range(21))


def normalize_radians(angle):
    """``angle`` wrapped into [-pi, pi) (MediaPipe's NormalizeRadians)."""
    return angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi))


def ssd_anchors() -> np.ndarray:
    """[2016, 2] anchor centres (x, y), normalised, in the palm model's output order.

    SsdAnchorsCalculator with fixed_anchor_size: layers with the same stride share a
    feature map; each layer adds an anchor of aspect ratio 1 and an interpolated one, so
    the 24 x 24 map of stride 8 has 2 anchors per cell and the 12 x 12 map of the three
    stride-16 layers has 6.
    """
    out, layer = [], 0
    while layer < len(ANCHOR_STRIDES):
        stride, per_cell = ANCHOR_STRIDES[layer], 0
        while layer < len(ANCHOR_STRIDES) and ANCHOR_STRIDES[layer] == stride:
            per_cell += 2
            layer += 1
        side = int(np.ceil(PALM_INPUT / stride))
        y, x = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        centres = (np.stack([x, y], -1).reshape(-1, 1, 2) + ANCHOR_OFFSET) / side
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def decode_palms(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The palm model's outputs as detections in its 192 x 192 input (normalised).

    Args:
      raw_boxes: [2016, 18] (x, y, w, h, then 7 keypoints' x, y) relative to the anchors.
      raw_scores: [2016] or [2016, 1] logits.
      anchors: [2016, 2] from ``ssd_anchors``.
      min_score: keep detections whose sigmoid score is >= this.
    Returns:
      boxes [N, 4] (xmin, ymin, xmax, ymax), keypoints [N, 7, 2], scores [N], normalised.
    """
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(-1, 18)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(-1), -SCORE_CLIP, SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw, anc = raw_boxes[keep] / BOX_SCALE, anchors[keep]
    centre = raw[:, :2] + anc  # fixed_anchor_size: anchor w = h = 1
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], -1)
    keypoints = raw[:, 4:].reshape(-1, NUM_PALM_KEYPOINTS, 2) + anc[:, None]
    return boxes, keypoints, scores[keep]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N] intersection over union of ``box [4]`` with ``boxes [N, 4]`` (xmin, ymin, xmax, ymax)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], -1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    Repeatedly takes the best remaining detection and every remaining one whose IoU with it
    is above ``threshold`` (itself included), and replaces the best one's box corners and
    keypoints by their score-weighted mean; its score stays. Shapes as ``decode_palms``'s;
    returns the merged detections, best first.
    """
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_kps, out_scores = [], [], []
    while order.size:
        top = order[0]
        close = iou(boxes[top], boxes[order]) > threshold
        group = order[close]
        w = scores[group][:, None]
        out_boxes.append(np.sum(boxes[group] * w, 0) / w.sum())
        out_kps.append(np.sum(keypoints[group] * w[..., None], 0) / w.sum())
        out_scores.append(scores[top])
        order = order[~close]
    n = len(out_scores)
    return (
        np.reshape(out_boxes, (n, 4)).astype(np.float32),
        np.reshape(out_kps, (n, NUM_PALM_KEYPOINTS, 2)).astype(np.float32),
        np.asarray(out_scores, np.float32),
    )


def letterbox(width: int, height: int) -> np.ndarray:
    """The square ROI [5] around a whole image, padded on its shorter side
    (ImageToTensorCalculator's keep_aspect_ratio): normalised centre, size, rotation 0."""
    side = max(width, height)
    return np.array([0.5, 0.5, side / width, side / height, 0.0], np.float32)


def tiles(width: int, height: int, count: int) -> np.ndarray:
    """Square ROIs [N, 5] (normalised, rotation 0) for finding palms too small for the whole
    image: side ``max(W, H) / count`` (at most the shorter side), overlapping by at least
    half a side, covering the image. ``count`` < 2 gives none."""
    if count < 2:
        return np.zeros((0, 5), np.float32)
    side = min(max(width, height) / count, min(width, height))

    def starts(length: int) -> np.ndarray:
        n = int(np.ceil(2 * (length - side) / side - 1e-9)) + 1
        return np.linspace(0.0, length - side, n)

    x0, y0 = np.meshgrid(starts(width), starts(height))
    centre = np.stack([(x0.ravel() + side / 2) / width, (y0.ravel() + side / 2) / height], -1)
    size = np.broadcast_to([side / width, side / height, 0.0], (len(centre), 3))
    return np.concatenate([centre, size], -1).astype(np.float32)


def roi_to_image(points: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Points ``[..., 2]`` normalised in an unrotated ROI's input (e.g. the palm detector's,
    of ``letterbox`` or ``tiles``) as normalised points of the image."""
    return roi[:2] + (np.asarray(points) - 0.5) * roi[2:4]


def detection_to_rect(
    box: np.ndarray, keypoints: np.ndarray, width: int, height: int
) -> np.ndarray:
    """PalmDetectionDetectionToRoi: the landmark model's rect [5] for one palm detection.

    ``box [4]`` and ``keypoints [7, 2]`` are normalised in the image (letterbox removed).
    """
    centre = (box[:2] + box[2:]) / 2
    size = box[2:] - box[:2]
    start, end = (keypoints[i] * (width, height) for i in PALM_ROTATION_KEYPOINTS)
    rotation = normalize_radians(np.pi / 2 - np.arctan2(-(end[1] - start[1]), end[0] - start[0]))
    rect = np.array([*centre, *size, rotation], np.float64)
    return transform_rect(rect, width, height, **PALM_RECT)


def landmarks_to_rect(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """HandLandmarkLandmarksToRoi: the next landmark pass's rect [5] from landmarks [21, 2].

    ``landmarks`` normalised in the image; the rect is the box of the wrist and the MCP/PIP
    joints in the frame rotated so that the wrist points down, then enlarged.
    """
    pts = np.asarray(landmarks, np.float64)[list(LANDMARK_RECT_SUBSET)] * (width, height)
    # subset indices 4, 6, 8: index, middle and ring MCP
    target = ((pts[4] + pts[8]) / 2 + pts[6]) / 2
    rotation = normalize_radians(
        np.pi / 2 - np.arctan2(-(target[1] - pts[0, 1]), target[0] - pts[0, 0])
    )
    centre = (pts.min(0) + pts.max(0)) / 2
    rot = _rotation_matrix(rotation)
    local = (pts - centre) @ rot  # rotated by -rotation
    lo, hi = local.min(0), local.max(0)
    centre = centre + rot @ ((lo + hi) / 2)
    rect = np.array([*(centre / (width, height)), *((hi - lo) / (width, height)), rotation])
    return transform_rect(rect, width, height, **LANDMARK_RECT)


def transform_rect(
    rect: np.ndarray, width: int, height: int, *, scale: float, shift_y: float
) -> np.ndarray:
    """RectTransformationCalculator with square_long: shift along the rect's own y axis by
    ``shift_y`` of its height, make it square on its longer side (in pixels), scale it."""
    x, y, w, h, rotation = (float(v) for v in rect)
    x += -height * h * shift_y * np.sin(rotation) / width
    y += height * h * shift_y * np.cos(rotation) / height
    long = max(w * width, h * height)
    return np.array([x, y, scale * long / width, scale * long / height, rotation], np.float32)


def _rotation_matrix(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def crop_matrix(rect: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """[2, 3] affine map from a ``size`` x ``size`` crop's pixel indices to the image's.

    ImageToTensorCalculator (OpenCV converter) maps the corners of the rotated rect to the
    crop's corners (0, 0) .. (size, size), and samples crop pixel (i, j) at the image point
    the map gives for (j, i); both in OpenCV's pixel convention.
    """
    x, y, w, h, rotation = (float(v) for v in rect)
    rot = _rotation_matrix(rotation)
    linear = rot @ np.diag([w * width / size, h * height / size])
    offset = np.array([x * width, y * height]) - linear @ np.array([size / 2, size / 2])
    return np.concatenate([linear, offset[:, None]], 1)


def warp(image: np.ndarray, matrix: np.ndarray, size: int, border: str) -> np.ndarray:
    """[size, size, C] float32 in [0, 1]: bilinear samples of ``image [H, W, C]`` uint8.

    Crop pixel (i, j) is the image at ``matrix @ (j, i, 1)`` (OpenCV's pixel convention).
    ``border``: 'zero' (outside is black) or 'replicate' (the nearest edge pixel), as the
    palm and landmark crops of MediaPipe.
    """
    h, w = image.shape[:2]
    j, i = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    # OpenCV's warp quantises the sample positions to 1/32 pixel and rounds to uint8
    sx = np.round((matrix[0, 0] * j + matrix[0, 1] * i + matrix[0, 2]) * 32) / 32
    sy = np.round((matrix[1, 0] * j + matrix[1, 1] * i + matrix[1, 2]) * 32) / 32
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = ((s - s0).astype(np.float32)[..., None] for s, s0 in ((sx, x0), (sy, y0)))
    flat = image.reshape(h * w, image.shape[-1])  # gather uint8 pixels, convert only those
    out = 0.0
    for dy, dx, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xx, yy = (x0 + dx).astype(np.int64), (y0 + dy).astype(np.int64)
        sample = flat[np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)].astype(np.float32)
        if border == "zero":
            inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
            sample = sample * inside[..., None]
        out = out + wgt * sample
    return (np.round(out) / 255.0).astype(np.float32)


def project_landmarks(raw: np.ndarray, rect: np.ndarray, width: int, height: int) -> np.ndarray:
    """The landmark model's [63] output as [21, 3] normalised image landmarks.

    x, y are crop pixels of the 224 input; they are rotated and scaled by the rect
    (LandmarkProjectionCalculator). z is relative depth scaled like x (TensorsToLandmarks'
    normalize_z 0.4, then the rect's width): a normalised z times the image width is
    pixels, smaller is nearer the camera.
    """
    lm = np.asarray(raw, np.float64).reshape(21, 3) / LANDMARK_INPUT
    x, y, w, h, rotation = (float(v) for v in rect)
    local = (lm[:, :2] - 0.5) @ _rotation_matrix(rotation).T
    xy = local * (w * width, h * height)
    out = np.empty((21, 3))
    out[:, 0] = xy[:, 0] / width + x
    out[:, 1] = xy[:, 1] / height + y
    out[:, 2] = lm[:, 2] / LANDMARK_NORMALIZE_Z * w
    return out.astype(np.float32)


def project_world(raw: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The landmark model's [63] world output as [21, 3] metres, rotated into the image's
    axes (x right, y down, z away from the camera; WorldLandmarkProjectionCalculator)."""
    world = np.asarray(raw, np.float64).reshape(21, 3).copy()
    world[:, :2] = world[:, :2] @ _rotation_matrix(float(rect[4])).T
    return world.astype(np.float32)


def to_handfit_pixels(normalised: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised MediaPipe points ``[..., 2]`` in handfit's pixels (pixel centres at +0.5)."""
    return np.asarray(normalised, np.float64) * (width, height) + 0.5


def rect_corners(rect: np.ndarray, width: int, height: int) -> np.ndarray:
    """[4, 2] corners of a rect in handfit's pixels (for drawing and boxes)."""
    x, y, w, h, rotation = (float(v) for v in rect)
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (w * width / 2, h * height / 2)
    return half @ _rotation_matrix(rotation).T + (x * width + 0.5, y * height + 0.5)
