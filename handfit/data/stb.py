"""Reader for STB, the Stereo Hand Pose Tracking Benchmark (Zhang et al. 2017).

Layout under ``data_dir`` (docs/datasets.md, "STB")::

    STB/
      images/<seq>/BB_left_<i>.png  BB_right_<i>.png  SK_color_<i>.png   (i from 0, 640x480)
      labels/<seq>_BB.mat  labels/<seq>_SK.mat     ('handPara': 3 x 21 x 1500, millimetres)

with ``<seq>`` in B1Counting, B1Random, ..., B6Random. Splits (as the papers use
them): 'train' = B2-B6 (10 sequences), 'test' = B1Counting + B1Random.

* Joint 0 is STB's **palm centre**, kept as the root (``joint0 == 'palm'``), as
  in Zimmermann & Brox's evaluation. ``root='wrist'`` instead moves it to
  ``ringMCP + 2 * (palm - ringMCP)`` (hand3d, hand-graph-cnn).
* ``handPara`` is read as ``transpose(2, 1, 0)`` -> (N, 21, 3) mm, converted to metres.
* 'BB' (Bumblebee2 stereo): labels are in the left camera's frame; the right
  camera sees ``X_r = X_l - [120.054 mm, 0, 0]``; both use the same K.
  ``cameras=('left', 'right')`` (default) gives two examples per frame.
* 'SK' (RealSense colour): labels are in the depth camera's frame;
  ``X_colour = R^-1 (X_depth - T)`` with STB's Rodrigues vector and translation,
  projected with the colour K.
* All hands are left hands (``mirror_left=True`` mirrors them to right hands).
* Every joint is labelled and counted visible (STB has no visibility flags).

Example order: sequence, then camera, then frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.io
from scipy.spatial.transform import Rotation

from handfit import skeleton
from handfit.data import example as ex

INFO = ex.DatasetInfo(
    name="STB (Stereo Hand Pose Tracking Benchmark)",
    url="https://github.com/zhjwustc/icip17_stereo_hand_pose_dataset",
    folder="STB",
    layout=(
        "  images/<seq>/BB_left_<i>.png, BB_right_<i>.png, SK_color_<i>.png (i = 0, 1, ...)\n"
        "  labels/<seq>_BB.mat, labels/<seq>_SK.mat\n"
        "  for <seq> in B1Counting, B1Random, ..., B6Counting, B6Random"
    ),
)
SEQUENCES = tuple(f"B{b}{kind}" for b in range(1, 7) for kind in ("Counting", "Random"))
SPLITS = {
    "train": tuple(s for s in SEQUENCES if not s.startswith("B1")),
    "test": ("B1Counting", "B1Random"),
}
SIZE = ex.IMAGE_SIZES["stb"]

# Bumblebee2: both cameras share K; the right one is 120.054 mm along +x of the left one.
BB_K = np.array(
    [[822.79041, 0.0, 318.47345], [0.0, 822.79041, 250.31296], [0.0, 0.0, 1.0]], np.float32
)
BB_BASELINE_MM = 120.054
# RealSense colour and depth intrinsics.
SK_COLOR_K = np.array(
    [[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]], np.float32
)
SK_DEPTH_K = np.array(
    [[475.62768, 0.0, 336.41179], [0.0, 474.77709, 238.77962], [0.0, 0.0, 1.0]], np.float32
)
# Colour -> depth: X_depth = R X_colour + T (mm), so X_colour = R^-1 (X_depth - T).
SK_ROTVEC = np.array([0.00531, -0.01196, 0.00301])
SK_T_MM = np.array([-24.0381, -0.4563, -1.2326])
SK_R = Rotation.from_rotvec(SK_ROTVEC).as_matrix()


def sk_depth_to_colour(points_mm: np.ndarray) -> np.ndarray:
    """SK labels ``[..., 3]`` in the depth camera's frame (mm) -> colour camera frame (mm)."""
    return (np.asarray(points_mm, np.float64) - SK_T_MM) @ SK_R  # R^-1 x = R^T x; row form x R


def palm_to_wrist(joints: np.ndarray) -> np.ndarray:
    """Canonical joints ``[..., 21, 3]`` with joint 0 moved from STB's palm centre to the wrist."""
    ring_mcp = joints[..., 13, :]
    out = np.array(joints, copy=True)
    out[..., 0, :] = ring_mcp + 2.0 * (joints[..., 0, :] - ring_mcp)
    return out


def load_labels(path: str) -> np.ndarray:
    """``handPara`` of one STB .mat file as (N, 21, 3) float64 mm, in STB's joint order."""
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or not a .mat file
        raise ex.AnnotationError(f"STB: {path}: not a readable .mat file ({e})") from e
    if "handPara" not in mat:
        fields = sorted(k for k in mat if not k.startswith("__"))
        raise ex.AnnotationError(
            f"STB: {path}: no field 'handPara' (fields: {fields}); expected handPara of "
            "shape (3, 21, N) in millimetres"
        )
    para = ex.check_array(
        mat["handPara"],
        (3, 21, None),
        dataset="STB",
        file=path,
        field="'handPara'",
        dtype=np.float64,
    )
    return para.transpose(2, 1, 0)


class STB:
    """STB as a random-access sequence of Examples.

    Args:
      data_dir: folder holding ``STB/`` (or that folder itself).
      split: 'train' or 'test'; or None with ``sequences`` given.
      sensor: 'BB' (stereo, default) or 'SK' (RealSense colour).
      cameras: for 'BB', which of ('left', 'right') to use.
      sequences: explicit sequence names, overriding ``split``.
      root: 'palm' (default, STB's own joint 0) or 'wrist'.
      mirror_left: mirror the (left) hands to right hands.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str | None = "test",
        *,
        sensor: str = "BB",
        cameras: Sequence[str] = ("left", "right"),
        sequences: Sequence[str] | None = None,
        root: str = "palm",
        mirror_left: bool = False,
    ):
        if sensor not in ("BB", "SK"):
            raise ValueError(f"STB: unknown sensor {sensor!r}; expected 'BB' or 'SK'")
        if sequences is None:
            if split not in SPLITS:
                raise ValueError(f"STB: unknown split {split!r}; expected one of {list(SPLITS)}")
            sequences = SPLITS[split]
        unknown = [s for s in sequences if s not in SEQUENCES]
        if unknown:
            raise ValueError(f"STB: unknown sequences {unknown}; expected names from {SEQUENCES}")
        if sensor == "SK":
            cameras = ("color",)
        elif not cameras or any(c not in ("left", "right") for c in cameras):
            raise ValueError(f"STB: cameras must be drawn from ('left', 'right'), got {cameras}")
        if root not in ("palm", "wrist"):
            raise ValueError(f"STB: unknown root {root!r}; expected 'palm' or 'wrist'")
        self.data_dir = os.fspath(data_dir)
        self.root = ex.resolve_root(INFO, data_dir, "labels")
        self.sensor, self.cameras = sensor, tuple(cameras)
        self.sequences, self.joint0, self.mirror_left = tuple(sequences), root, mirror_left
        order = np.asarray(skeleton.STB_TO_CANONICAL)
        self._joints = []  # per sequence: (N, 21, 3) metres, canonical, in the labels' frame
        self._index = []  # (sequence number, camera, frame) per example
        for s, seq in enumerate(self.sequences):
            path = ex.require_file(
                INFO, os.path.join(self.root, "labels", f"{seq}_{sensor}.mat"), self.data_dir
            )
            folder = os.path.join(self.root, "images", seq)
            if not os.path.isdir(folder):
                raise ex.DatasetNotFoundError(ex.missing(INFO, folder, self.data_dir))
            mm = load_labels(path)
            if sensor == "SK":
                mm = sk_depth_to_colour(mm)
            joints = (mm[:, order] / 1000.0).astype(np.float32)
            if root == "wrist":
                joints = palm_to_wrist(joints)
            self._joints.append(joints)
            self._index += [(s, cam, i) for cam in self.cameras for i in range(len(joints))]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> ex.Example:
        return self.get(index)

    def image_path(self, index: int) -> str:
        s, cam, i = self._index[index]
        prefix = "SK_color" if cam == "color" else f"BB_{cam}"
        return os.path.join(self.root, "images", self.sequences[s], f"{prefix}_{i}.png")

    def get(self, index: int, load_image: bool = True) -> ex.Example:
        """Example ``index``; without ``load_image`` the image is None."""
        index = ex.check_index(index, len(self), "STB")
        s, cam, i = self._index[index]
        joints3d = self._joints[s][i].copy()
        if cam == "right":
            joints3d[:, 0] -= BB_BASELINE_MM / 1000.0
        K = SK_COLOR_K if cam == "color" else BB_K
        name = f"{self.sequences[s]}/{self.sensor}_{cam}/{i}"
        image = ex.load_rgb(self.image_path(index), SIZE, "STB", name) if load_image else None
        example = ex.Example(
            image=image,
            K=K.copy(),
            joints3d=joints3d,
            joints2d=ex.project(joints3d, K),
            visible=np.ones(21, bool),
            side=ex.LEFT,
            dataset="stb",
            sample_id=name,
            image_path=self.image_path(index),
            joint0=self.joint0,
        )
        return ex.finish(example, self.mirror_left)
