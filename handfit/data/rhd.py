"""Reader for RHD, the Rendered Hand Pose dataset (Zimmermann & Brox 2017).

Layout under ``data_dir`` (docs/datasets.md, "RHD")::

    RHD_published_v2/
      training/anno_training.pickle     training/color/%.5d.png  training/mask/%.5d.png
      evaluation/anno_evaluation.pickle evaluation/color/%.5d.png evaluation/mask/%.5d.png

Each image shows up to two hands; the pickle labels 42 keypoints, rows 0-20 the
left hand and 21-41 the right, each in RHD's per-hand order (converted here to
handfit's canonical order). One example is one image with one chosen hand:

* ``hand='mask'`` (default, hand3d's rule): the hand with more mask pixels
  (left class ids 2-17, right 18-33); a tie goes to the right hand.
* ``hand='keypoints'``: the hand with more visible keypoints; a tie goes to the
  right hand.
* ``hand='left'`` / ``'right'``: always that hand.

The hand choice needs the mask, so it is made when an example is read, not when
the reader is built. ``root='palm'`` replaces joint 0 (wrist) by the palm point
``0.5 * (wrist + middle MCP)`` as in hand3d's evaluation (visible if either is);
the example's ``joint0`` says which. The mask is the chosen hand's class ids as
{0, 1}. K is per sample.
"""

from __future__ import annotations

import os

import numpy as np

from handfit import safe_pickle, skeleton
from handfit.data import example as ex

INFO = ex.DatasetInfo(
    name="RHD (Rendered Hand Pose dataset)",
    url="https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html",
    folder="RHD_published_v2",
    layout=(
        "  training/anno_training.pickle, training/color/%.5d.png, training/mask/%.5d.png\n"
        "  evaluation/anno_evaluation.pickle, evaluation/color/%.5d.png, "
        "evaluation/mask/%.5d.png"
    ),
)
SPLITS = ("training", "evaluation")
HANDS = ("mask", "keypoints", "left", "right")
LEFT_IDS = (2, 17)  # inclusive class-id range of the left hand in the mask
RIGHT_IDS = (18, 33)
SIZE = ex.IMAGE_SIZES["rhd"]


class RHD:
    """RHD ``split`` ('training' or 'evaluation') as a random-access sequence of Examples.

    Args:
      data_dir: folder holding ``RHD_published_v2/`` (or that folder itself).
      split: 'training' (41,258 samples) or 'evaluation' (2,728).
      hand: which hand each example takes: 'mask' (default), 'keypoints', 'left', 'right'.
      root: 'wrist' (default) or 'palm' for joint 0.
      mirror_left: mirror left hands to right hands (:func:`example.mirror`).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "training",
        *,
        hand: str = "mask",
        root: str = "wrist",
        mirror_left: bool = False,
    ):
        if split not in SPLITS:
            raise ValueError(f"RHD: unknown split {split!r}; expected one of {SPLITS}")
        if hand not in HANDS:
            raise ValueError(f"RHD: unknown hand rule {hand!r}; expected one of {HANDS}")
        if root not in ("wrist", "palm"):
            raise ValueError(f"RHD: unknown root {root!r}; expected 'wrist' or 'palm'")
        self.data_dir = os.fspath(data_dir)
        self.root = ex.resolve_root(INFO, data_dir, os.path.join(split, f"anno_{split}.pickle"))
        self.split, self.hand, self.joint0, self.mirror_left = split, hand, root, mirror_left
        self.anno_path = os.path.join(self.root, split, f"anno_{split}.pickle")
        annos = safe_pickle.load(self.anno_path)
        if not isinstance(annos, dict):
            raise ex.AnnotationError(
                f"RHD: {self.anno_path}: expected a dict {{sample_id: anno}}, "
                f"got {type(annos).__name__}"
            )
        self.ids = sorted(annos)
        n = len(self.ids)
        self.xyz = np.empty((n, 42, 3), np.float32)
        self.uv = np.empty((n, 42, 2), np.float32)
        self.vis = np.empty((n, 42), bool)
        self.K = np.empty((n, 3, 3), np.float32)
        for i, sid in enumerate(self.ids):
            anno = annos[sid]
            where = f"sample {sid}"
            if not isinstance(anno, dict) or any(k not in anno for k in ("xyz", "uv_vis", "K")):
                raise ex.AnnotationError(
                    f"RHD: {self.anno_path}: {where}: expected a dict with fields 'xyz', "
                    f"'uv_vis', 'K', got {sorted(anno) if isinstance(anno, dict) else anno!r}"
                )
            kw = {"dataset": "RHD", "file": self.anno_path}
            self.xyz[i] = ex.check_array(anno["xyz"], (42, 3), field=f"'xyz' ({where})", **kw)
            uv_vis = ex.check_array(anno["uv_vis"], (42, 3), field=f"'uv_vis' ({where})", **kw)
            self.uv[i] = uv_vis[:, :2]
            self.vis[i] = uv_vis[:, 2] == 1
            self.K[i] = ex.check_array(anno["K"], (3, 3), field=f"'K' ({where})", **kw)
        for sub in ("color", "mask"):
            folder = os.path.join(self.root, split, sub)
            if not os.path.isdir(folder):
                raise ex.DatasetNotFoundError(ex.missing(INFO, folder, self.data_dir))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> ex.Example:
        return self.get(index)

    def image_path(self, index: int) -> str:
        return os.path.join(self.root, self.split, "color", f"{self.ids[index]:05d}.png")

    def mask_path(self, index: int) -> str:
        return os.path.join(self.root, self.split, "mask", f"{self.ids[index]:05d}.png")

    def choose_hand(self, index: int, class_mask: np.ndarray | None = None) -> str:
        """'left' or 'right': the hand example ``index`` takes under this reader's rule."""
        if self.hand in ("left", "right"):
            return self.hand
        if self.hand == "keypoints":
            left, right = self.vis[index, :21].sum(), self.vis[index, 21:].sum()
        else:
            if class_mask is None:
                class_mask = self._class_mask(index)
            left = np.count_nonzero((class_mask >= LEFT_IDS[0]) & (class_mask <= LEFT_IDS[1]))
            right = np.count_nonzero((class_mask >= RIGHT_IDS[0]) & (class_mask <= RIGHT_IDS[1]))
        return ex.LEFT if left > right else ex.RIGHT

    def _class_mask(self, index: int) -> np.ndarray:
        return ex.load_gray(self.mask_path(index), SIZE, "RHD", self._name(index), labels=True)

    def _name(self, index: int) -> str:
        return f"{self.split}/{self.ids[index]:05d}"

    def get(self, index: int, load_image: bool = True) -> ex.Example:
        """Example ``index``; without ``load_image`` the image is None (the mask is still read
        when the hand rule needs it)."""
        index = ex.check_index(index, len(self), "RHD")
        needs_mask = load_image or self.hand == "mask"
        class_mask = self._class_mask(index) if needs_mask else None
        side = self.choose_hand(index, class_mask)
        rows = slice(0, 21) if side == ex.LEFT else slice(21, 42)
        order = np.asarray(skeleton.RHD_TO_CANONICAL)
        joints3d = self.xyz[index, rows][order]
        joints2d = self.uv[index, rows][order]
        visible = self.vis[index, rows][order]
        if self.joint0 == "palm":
            joints3d[0] = 0.5 * (joints3d[0] + joints3d[skeleton.MIDDLE_MCP])
            joints2d[0] = ex.project(joints3d[0], self.K[index])
            visible[0] = visible[0] | visible[skeleton.MIDDLE_MCP]
        mask = None
        if class_mask is not None and load_image:
            lo, hi = LEFT_IDS if side == ex.LEFT else RIGHT_IDS
            mask = ((class_mask >= lo) & (class_mask <= hi)).astype(np.uint8)
        image = None
        if load_image:
            image = ex.load_rgb(self.image_path(index), SIZE, "RHD", self._name(index))
        example = ex.Example(
            image=image,
            K=self.K[index].copy(),
            joints3d=joints3d.astype(np.float32),
            joints2d=joints2d.astype(np.float32),
            visible=visible.copy(),
            side=side,
            dataset="rhd",
            sample_id=self._name(index),
            image_path=self.image_path(index),
            joint0=self.joint0,
            mask=mask,
            mask_path=self.mask_path(index),
        )
        return ex.finish(example, self.mirror_left)
