"""Hands in any RGB image: MediaPipe's palm detector and hand-landmark models, run offline.

    from handfit import detect, refine
    found = detect.hands(image)  # [Hand]: side, scores, landmarks [21, 2] px, world [21, 3] m
    # then refine.fit(landmarks, visible, camera, model, world=..., config=...) per side

The models are fetched once with ``python main.py --mode=models`` (``detect.models``);
running them needs ``pip install -e .[detect]`` (LiteRT). ``detect.graph`` holds the pure
NumPy pieces of MediaPipe's graph (anchors, decoding, NMS, rects, crops).
"""

from __future__ import annotations

import functools

import numpy as np

from handfit.detect import graph, models
from handfit.detect.detector import DetectConfig, Detector, Hand

__all__ = ["DetectConfig", "Detector", "Hand", "graph", "hands", "models"]


@functools.cache
def _default(model_dir: str) -> Detector:
    return Detector(DetectConfig(model_dir=model_dir))


def hands(
    image: np.ndarray, detector: Detector | None = None, *, model_dir: str = ""
) -> list[Hand]:
    """The hands in ``image [H, W, 3]`` uint8 RGB, with ``detector`` or a default one (made
    once per ``model_dir``, default settings)."""
    return (detector or _default(model_dir))(image)
