"""Reader for Dexter+Object (Sridhar et al. 2016): fingertip labels on RGB-D sequences.

Layout under ``data_dir`` (docs/datasets.md, "Dexter+Object")::

    dexter+object/data/<Seq>/color/Color_%04d.bmp    (640x480)
    dexter+object/data/<Seq>/depth/Depth_%04d.png    (320x240; not read here)
    dexter+object/data/<Seq>/annotations/<Seq>3D.txt (and <Seq>2D.txt, not read here)

for ``<Seq>`` in Grasp1, Grasp2, Occlusion, Rigid, Pinch, Rotate (test only).

* ``<Seq>3D.txt`` has one line per frame: groups separated by ``;``, coordinates
  by ``,``; groups 0-4 are the fingertips (thumb, index, middle, ring, little)
  as (x, y, z) in mm; further groups (cuboid corners) are ignored. Blank lines
  are not frames.
* A tip with ``z == 32001`` is missing: NaN and not visible. Missing tips are
  counted (``reader.num_missing_tips``), not errors.
* The labels' x and y are flipped relative to the camera: negate them, then map
  into the colour camera with its extrinsics [R|t] (t in mm) and project with
  the colour K. ``joints3d`` is in the colour camera's frame, metres.
* Only the fingertips are labelled: the other 16 joints are NaN, not visible.
* Colour images are paired with annotation lines by sorted file name; a
  different count of images and lines is an error.
* All hands are left hands.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from handfit import skeleton
from handfit.data import example as ex

INFO = ex.DatasetInfo(
    name="Dexter+Object",
    url="https://handtracker.mpi-inf.mpg.de/projects/RealtimeHO/dexter+object.html",
    folder="dexter+object",
    layout=(
        "  data/<Seq>/color/Color_%04d.bmp, data/<Seq>/annotations/<Seq>3D.txt\n"
        "  for <Seq> in Grasp1, Grasp2, Occlusion, Rigid, Pinch, Rotate"
    ),
)
SEQUENCES = ("Grasp1", "Grasp2", "Occlusion", "Rigid", "Pinch", "Rotate")
MISSING = 32001.0
SIZE = ex.IMAGE_SIZES["dexter_object"]
IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg")

COLOR_K = np.array([[587.45209, 0.0, 325.0], [0.0, 600.67456, 249.0], [0.0, 0.0, 1.0]], np.float32)
# Colour extrinsics [R | t], t in mm, applied after negating x and y.
COLOR_RT = np.array(
    [
        [0.9999, 0.0034, 0.0161, 19.0473],
        [-0.0033, 1.0, -0.0079, -1.8514],
        [-0.0162, 0.0079, 0.9998, -4.7501],
    ]
)
DEPTH_K = np.array([[224.502, 0.0, 160.0], [0.0, 230.494, 120.0], [0.0, 0.0, 1.0]], np.float32)


def labels_to_colour(points_mm: np.ndarray) -> np.ndarray:
    """Dexter+Object 3D labels ``[..., 3]`` (mm) -> colour camera frame ``[..., 3]`` (mm)."""
    flipped = np.asarray(points_mm, np.float64) * np.array([-1.0, -1.0, 1.0])
    return flipped @ COLOR_RT[:, :3].T + COLOR_RT[:, 3]


def parse_annotations(path: str) -> np.ndarray:
    """The fingertips of a ``<Seq>3D.txt`` as (frames, 5, 3) mm, missing tips NaN."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ex.AnnotationError(f"Dexter+Object: {path}: not a text file ({e})") from e
    frames = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        groups = [g for g in line.split(";") if g.strip()]
        if len(groups) < 5:
            raise ex.AnnotationError(
                f"Dexter+Object: {path}: line {number}: {len(groups)} ';'-separated groups, "
                "expected at least 5 (the fingertips) of 'x, y, z'"
            )
        tips = []
        for g, group in enumerate(groups[:5]):
            try:
                values = [float(v) for v in group.split(",")]
            except ValueError as e:
                raise ex.AnnotationError(
                    f"Dexter+Object: {path}: line {number}: group {g} {group.strip()!r} "
                    "is not 'x, y, z'"
                ) from e
            if len(values) != 3:
                raise ex.AnnotationError(
                    f"Dexter+Object: {path}: line {number}: group {g} has {len(values)} "
                    "numbers, expected 3 (x, y, z in mm)"
                )
            if not np.all(np.isfinite(values)):
                raise ex.AnnotationError(
                    f"Dexter+Object: {path}: line {number}: group {g} holds NaN or inf"
                )
            tips.append(values)
        frames.append(tips)
    tips = np.asarray(frames, np.float64).reshape(-1, 5, 3)
    tips[tips[..., 2] == MISSING] = np.nan
    return tips


class DexterObject:
    """Dexter+Object (test only) as a random-access sequence of Examples.

    Args:
      data_dir: folder holding ``dexter+object/`` (or that folder itself).
      sequences: which sequences (default all six).
      mirror_left: mirror the (left) hands to right hands.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        sequences: Sequence[str] = SEQUENCES,
        *,
        mirror_left: bool = False,
    ):
        unknown = [s for s in sequences if s not in SEQUENCES]
        if unknown:
            raise ValueError(
                f"Dexter+Object: unknown sequences {unknown}; expected names from {SEQUENCES}"
            )
        self.data_dir = os.fspath(data_dir)
        self.root = ex.resolve_root(INFO, data_dir, "data")
        self.sequences, self.mirror_left = tuple(sequences), mirror_left
        self._tips = []  # per sequence: (N, 5, 3) metres, colour frame, NaN = missing
        self._images = []  # per sequence: sorted colour image paths
        self._index = []  # (sequence number, frame)
        self.num_missing_tips = 0
        for s, seq in enumerate(self.sequences):
            base = os.path.join(self.root, "data", seq)
            path = ex.require_file(
                INFO, os.path.join(base, "annotations", f"{seq}3D.txt"), self.data_dir
            )
            folder = os.path.join(base, "color")
            if not os.path.isdir(folder):
                raise ex.DatasetNotFoundError(ex.missing(INFO, folder, self.data_dir))
            images = sorted(
                os.path.join(folder, f)
                for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            tips_mm = parse_annotations(path)
            if len(images) != len(tips_mm):
                raise ex.AnnotationError(
                    f"Dexter+Object: {seq}: {len(images)} colour images in {folder} but "
                    f"{len(tips_mm)} annotated frames in {path}; they are paired by sorted "
                    "order and must be as many"
                )
            self.num_missing_tips += int(np.isnan(tips_mm[..., 2]).sum())
            self._tips.append((labels_to_colour(tips_mm) / 1000.0).astype(np.float32))
            self._images.append(images)
            self._index += [(s, i) for i in range(len(images))]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> ex.Example:
        return self.get(index)

    def image_path(self, index: int) -> str:
        s, i = self._index[index]
        return self._images[s][i]

    def get(self, index: int, load_image: bool = True) -> ex.Example:
        """Example ``index``; without ``load_image`` the image is None."""
        index = ex.check_index(index, len(self), "Dexter+Object")
        s, i = self._index[index]
        joints3d = np.full((21, 3), np.nan, np.float32)
        joints3d[list(skeleton.DEXTER_TIPS)] = self._tips[s][i]
        joints2d = np.full((21, 2), np.nan, np.float32)
        labelled = np.isfinite(joints3d).all(-1)
        joints2d[labelled] = ex.project(joints3d[labelled], COLOR_K)
        name = f"{self.sequences[s]}/{i:04d}"
        path = self.image_path(index)
        image = ex.load_rgb(path, SIZE, "Dexter+Object", name) if load_image else None
        example = ex.Example(
            image=image,
            K=COLOR_K.copy(),
            joints3d=joints3d,
            joints2d=joints2d,
            visible=labelled,
            side=ex.LEFT,
            dataset="dexter_object",
            sample_id=name,
            image_path=path,
        )
        return ex.finish(example, self.mirror_left)
