"""Reader for FreiHAND (Zimmermann et al. 2019): right hands with MANO fits.

Layout under ``data_dir`` (docs/datasets.md, "FreiHAND"; the official zips unpack to it)::

    FreiHAND_pub_v2/
      training/rgb/%08d.jpg  (224x224; 32,560 x 4 versions)  training/mask/%08d.jpg (32,560)
      training_K.json training_xyz.json training_verts.json training_scale.json training_mano.json
      evaluation/rgb/%08d.jpg (3,960)
      evaluation_K.json evaluation_scale.json
      evaluation_xyz.json evaluation_verts.json evaluation_mano.json  (public eval annotations)

* Training image ``idx + 32560 * k`` (k = 0 'gs', 1 'hom', 2 'sample', 3 'auto')
  shares annotation ``idx``; so does the mask ``training/mask/idx``. Examples run
  version by version: example ``j`` of a reader with versions ``vs`` is version
  ``vs[j // N]``, annotation ``j % N``.
* The mask JPEG is thresholded at > 127 into {0, 1}.
* The 61 MANO numbers: ``pose = theta[:48]`` (axis-angle, 3 global + 45,
  relative to MANO's mean hand), ``shape = theta[48:58]``, ``uv_root =
  theta[58:60]``, ``scale = theta[60]``.
* ``joints3d`` is ``*_xyz.json`` (metres, camera frame, canonical order already),
  ``joints2d`` its projection with K; all joints visible (FreiHAND has no flags).
* The evaluation split needs the public evaluation annotations (xyz, verts,
  mano); with ``require_labels=False`` and those files absent, joints and
  vertices are NaN and nothing is visible (images and K only, e.g. for a
  submission).
* Right hands only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from handfit.data import example as ex

INFO = ex.DatasetInfo(
    name="FreiHAND",
    url="https://lmb.informatik.uni-freiburg.de/resources/datasets/FreihandDataset.en.html",
    folder="FreiHAND_pub_v2",
    layout=(
        "  training/rgb/%08d.jpg, training/mask/%08d.jpg, training_{K,xyz,verts,scale,mano}.json\n"
        "  evaluation/rgb/%08d.jpg, evaluation_{K,scale}.json and, from the public evaluation\n"
        "  annotations, evaluation_{xyz,verts,mano}.json"
    ),
)
SPLITS = ("training", "evaluation")
VERSIONS = ("gs", "hom", "sample", "auto")
SIZE = ex.IMAGE_SIZES["freihand"]
MASK_THRESHOLD = 127


def _load_json(path: str) -> object:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ex.AnnotationError(f"FreiHAND: {path}: not valid JSON ({e})") from e


class FreiHAND:
    """FreiHAND ``split`` as a random-access sequence of Examples.

    Args:
      data_dir: folder holding ``FreiHAND_pub_v2/`` (or that folder itself).
      split: 'training' or 'evaluation'.
      versions: training image versions to include (default all four); ignored for
        'evaluation', which has one.
      require_labels: for 'evaluation', fail if the public evaluation annotations
        are missing (default) rather than give unlabelled examples.
      with_vertices: read ``*_verts.json`` (778 x 3 per sample; the largest file).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "training",
        *,
        versions: Sequence[str] = VERSIONS,
        require_labels: bool = True,
        with_vertices: bool = True,
    ):
        if split not in SPLITS:
            raise ValueError(f"FreiHAND: unknown split {split!r}; expected one of {SPLITS}")
        if split == "training":
            if not versions or any(v not in VERSIONS for v in versions):
                raise ValueError(
                    f"FreiHAND: versions must be drawn from {VERSIONS}, got {versions}"
                )
            self.versions = tuple(versions)
        else:
            self.versions = (VERSIONS[0],)
        self.data_dir = os.fspath(data_dir)
        self.root = ex.resolve_root(INFO, data_dir, f"{split}_K.json")
        self.split = split

        def path(name: str) -> str:
            return os.path.join(self.root, f"{split}_{name}.json")

        def check(value, shape, name, dtype=np.float32):
            return ex.check_array(
                value,
                shape,
                dataset="FreiHAND",
                file=path(name),
                field=f"{split}_{name} {list(shape)}",
                dtype=dtype,
            )

        self.K = check(
            _load_json(ex.require_file(INFO, path("K"), self.data_dir)), (None, 3, 3), "K"
        )
        n = len(self.K)
        labels = ("xyz", "mano") + (("verts",) if with_vertices else ())
        self.has_labels = (
            split == "training"
            or require_labels
            or all(os.path.isfile(path(name)) for name in labels)
        )
        self.xyz = self.verts = self.mano = None
        if self.has_labels:
            self.xyz = check(
                _load_json(ex.require_file(INFO, path("xyz"), self.data_dir)), (n, 21, 3), "xyz"
            )
            mano = check(
                _load_json(ex.require_file(INFO, path("mano"), self.data_dir)), (n, 1, 61), "mano"
            )
            self.mano = mano[:, 0]
            if with_vertices:
                self.verts = check(
                    _load_json(ex.require_file(INFO, path("verts"), self.data_dir)),
                    (n, None, 3),
                    "verts",
                )
        scale_path = path("scale")
        self.scale = None
        if os.path.isfile(scale_path):
            self.scale = check(_load_json(scale_path), (n,), "scale")
        self.num_annotations = n
        for sub in ("rgb",) + (("mask",) if split == "training" else ()):
            folder = os.path.join(self.root, split, sub)
            if not os.path.isdir(folder):
                raise ex.DatasetNotFoundError(ex.missing(INFO, folder, self.data_dir))

    def __len__(self) -> int:
        return self.num_annotations * len(self.versions)

    def __getitem__(self, index: int) -> ex.Example:
        return self.get(index)

    def _ids(self, index: int) -> tuple[int, int]:
        """(annotation idx, image id) of example ``index``."""
        version, idx = divmod(index, self.num_annotations)
        k = VERSIONS.index(self.versions[version])
        return idx, idx + self.num_annotations * k

    def image_path(self, index: int) -> str:
        return os.path.join(self.root, self.split, "rgb", f"{self._ids(index)[1]:08d}.jpg")

    def mask_path(self, index: int) -> str | None:
        if self.split != "training":
            return None
        return os.path.join(self.root, self.split, "mask", f"{self._ids(index)[0]:08d}.jpg")

    def get(self, index: int, load_image: bool = True) -> ex.Example:
        """Example ``index``; without ``load_image`` the image and mask are None."""
        index = ex.check_index(index, len(self), "FreiHAND")
        idx, image_id = self._ids(index)
        K = self.K[idx]
        version = self.versions[index // self.num_annotations]
        name = f"{self.split}/{image_id:08d}" + (
            f" ({version})" if self.split == "training" else ""
        )
        if self.has_labels:
            joints3d = self.xyz[idx].copy()
            joints2d = ex.project(joints3d, K)
            visible = np.ones(21, bool)
        else:
            joints3d = np.full((21, 3), np.nan, np.float32)
            joints2d = np.full((21, 2), np.nan, np.float32)
            visible = np.zeros(21, bool)
        image = mask = None
        if load_image:
            image = ex.load_rgb(self.image_path(index), SIZE, "FreiHAND", name)
            if self.mask_path(index) is not None:
                gray = ex.load_gray(self.mask_path(index), SIZE, "FreiHAND", name)
                mask = (gray > MASK_THRESHOLD).astype(np.uint8)
        theta = self.mano[idx] if self.mano is not None else None
        example = ex.Example(
            image=image,
            K=K.copy(),
            joints3d=joints3d,
            joints2d=joints2d,
            visible=visible,
            side=ex.RIGHT,
            dataset="freihand",
            sample_id=name,
            image_path=self.image_path(index),
            mask=mask,
            mask_path=self.mask_path(index),
            mano_pose=None if theta is None else theta[:48].copy(),
            mano_shape=None if theta is None else theta[48:58].copy(),
            mano_uv_root=None if theta is None else theta[58:60].copy(),
            mano_scale=None if theta is None else np.float32(theta[60]),
            vertices=None if self.verts is None else self.verts[idx].copy(),
        )
        return ex.finish(example, mirror_left=False)
