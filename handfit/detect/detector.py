"""The hand detector: MediaPipe's palm detector and hand-landmark model run with LiteRT.

``Detector(config)(image)`` returns one ``Hand`` per hand found: palm detection on the
letterboxed 192 x 192 image (and, with ``tiles``, on overlapping tiles, for hands too small
to be found in the whole image), weighted NMS, the rotated and enlarged crop of each palm, the
landmark model on its 224 x 224 crop (image landmarks with relative depth, hand presence,
handedness, metric world landmarks), and optionally a second landmark pass on the crop
that the first pass's landmarks give (what MediaPipe's tracking does on the next frame of a
video). ``ai-edge-litert`` is imported here only (``pip install -e .[detect]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from handfit import defaults
from handfit.detect import graph, models


class Hand(NamedTuple):
    """One detected hand; pixels in handfit's convention (pixel centres at c + 0.5).

    side: 'right' or 'left' (for an ordinary, unmirrored photo).
    handedness: the model's probability of ``side``, in [0.5, 1].
    score: the palm detector's score.
    presence: the landmark model's hand presence.
    box: [4] (x0, y0, x1, y1) pixels, the palm detection's box.
    rect: [4, 2] pixels, the corners of the crop the landmarks come from.
    landmarks: [21, 2] pixels, canonical joint order (``handfit.skeleton``).
    depth: [21] relative depth in pixels (smaller is nearer), MediaPipe's landmark z.
    world: [21, 3] metres around the hand's centre, camera axes (x right, y down, z away).
    """

    side: str
    handedness: float
    score: float
    presence: float
    box: np.ndarray
    rect: np.ndarray
    landmarks: np.ndarray
    depth: np.ndarray
    world: np.ndarray


DETECT = defaults.section("detect")


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    """Settings of the detector: the fields of ``config.detect`` but the CLI's ``enabled``,
    each defaulting to (and explained in) configs/default.py's (``handfit.defaults``)."""

    model_dir: str = DETECT.model_dir
    max_hands: int = DETECT.max_hands
    min_score: float = DETECT.min_score
    min_presence: float = DETECT.min_presence
    nms_iou: float = DETECT.nms_iou
    second_pass: bool = DETECT.second_pass
    tiles: int = DETECT.tiles
    threads: int = DETECT.threads

    @classmethod
    def from_config(cls, config: Mapping | DetectConfig | None) -> DetectConfig:
        """From ``config.detect`` (ConfigDict or dict, any subset of its fields); a key that
        is not one of ``config.detect``'s is an error naming it."""
        if config is None or isinstance(config, cls):
            return config or cls()
        return defaults.build(cls, config, known=("detect",))


def _interpreter(path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError(
            "the hand detector needs LiteRT: pip install -e .[detect] (ai-edge-litert)"
        ) from e
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
    """The model's outputs, in its output order, for one input [1, S, S, 3]."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


class Detector:
    """Finds hands in RGB images; ``Detector(config)(image [H, W, 3] uint8) -> [Hand]``.

    Holds the two LiteRT interpreters (not thread-safe: one Detector per thread).
    """

    def __init__(self, config: Mapping | DetectConfig | None = None):
        self.config = DetectConfig.from_config(config)
        found = models.paths(self.config.model_dir)
        self._palm = _interpreter(found["palm_detection_full.tflite"], self.config.threads)
        self._landmark = _interpreter(found["hand_landmark_full.tflite"], self.config.threads)
        self._anchors = graph.ssd_anchors()

    def palms(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Palm detections (after NMS, best first, at most ``max_hands``), normalised in the
        image: boxes [N, 4] (xmin, ymin, xmax, ymax), keypoints [N, 7, 2], scores [N]. The
        palm detector runs on the letterboxed image and on ``config.tiles``' tiles."""
        h, w = image.shape[:2]
        rois = [graph.letterbox(w, h), *graph.tiles(w, h, self.config.tiles)]
        found = [self._palms_in(image, roi) for roi in rois]
        boxes, kps, scores = (np.concatenate(parts) for parts in zip(*found, strict=True))
        boxes, kps, scores = graph.weighted_nms(boxes, kps, scores, self.config.nms_iou)
        n = self.config.max_hands
        return boxes[:n], kps[:n], scores[:n]

    def _palms_in(self, image: np.ndarray, roi: np.ndarray):
        """The palm detector on the square ``roi`` [5] (normalised): boxes, keypoints and
        scores over ``min_score``, before NMS, normalised in the image."""
        h, w = image.shape[:2]
        matrix = graph.crop_matrix(roi, w, h, graph.PALM_INPUT)
        crop = graph.warp(image, matrix, graph.PALM_INPUT, "zero")
        raw_boxes, raw_scores = _run(self._palm, crop[None])
        boxes, kps, scores = graph.decode_palms(
            raw_boxes[0], raw_scores[0], self._anchors, self.config.min_score
        )
        boxes = graph.roi_to_image(boxes.reshape(-1, 2, 2), roi).reshape(-1, 4)
        return boxes, graph.roi_to_image(kps, roi), scores

    def landmarks(self, image: np.ndarray, rect: np.ndarray):
        """One landmark pass on the crop ``rect`` [5] (normalised, see ``graph``):
        (landmarks [21, 3] normalised with relative z, world [21, 3] m, presence, P(label
        'Left'))."""
        h, w = image.shape[:2]
        matrix = graph.crop_matrix(rect, w, h, graph.LANDMARK_INPUT)
        crop = graph.warp(image, matrix, graph.LANDMARK_INPUT, "replicate")
        raw, presence, handedness, world = _run(self._landmark, crop[None])
        return (
            graph.project_landmarks(raw[0], rect, w, h),
            graph.project_world(world[0], rect),
            float(presence.reshape(())),
            float(handedness.reshape(())),
        )

    def __call__(self, image: np.ndarray) -> list[Hand]:
        """The hands in ``image [H, W, 3]`` uint8 RGB, best palm score first."""
        image = _check_image(image)
        h, w = image.shape[:2]
        hands = []
        for box, kps, score in zip(*self.palms(image)):
            rect = graph.detection_to_rect(box, kps, w, h)
            lm, world, presence, left = self.landmarks(image, rect)
            if presence < self.config.min_presence:
                continue
            if self.config.second_pass:
                rect2 = graph.landmarks_to_rect(lm[:, :2], w, h)
                second = self.landmarks(image, rect2)
                if second[2] >= self.config.min_presence:
                    rect, (lm, world, presence, left) = rect2, second
            # MediaPipe labels hands as seen in a mirrored (selfie) image: its 'Left' is the
            # right hand of an ordinary photo.
            side, prob = ("right", left) if left >= 0.5 else ("left", 1.0 - left)
            corners = graph.rect_corners(rect, w, h)
            hands.append(
                Hand(
                    side=side,
                    handedness=prob,
                    score=float(score),
                    presence=presence,
                    box=graph.to_handfit_pixels(box.reshape(2, 2), w, h).reshape(4),
                    rect=corners,
                    landmarks=graph.to_handfit_pixels(lm[:, :2], w, h)[
                        list(graph.MEDIAPIPE_TO_CANONICAL)
                    ],
                    depth=(lm[:, 2] * w)[list(graph.MEDIAPIPE_TO_CANONICAL)],
                    world=world[list(graph.MEDIAPIPE_TO_CANONICAL)],
                )
            )
        return _drop_duplicates(hands)


def _drop_duplicates(hands: list[Hand], threshold: float = 0.5) -> list[Hand]:
    """Keeps the first of hands whose landmark boxes overlap by IoU > ``threshold`` (two palm
    detections that led to one hand)."""
    kept, boxes = [], []
    for hand in hands:
        box = np.concatenate([hand.landmarks.min(0), hand.landmarks.max(0)])
        if boxes and np.any(graph.iou(box, np.stack(boxes)) > threshold):
            continue
        kept.append(hand)
        boxes.append(box)
    return kept


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"detect: expected an RGB image [H, W, 3] uint8, got {image.dtype} {image.shape}"
        )
    return image
