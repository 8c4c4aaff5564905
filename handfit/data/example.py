"""The canonical example every dataset reader returns, and helpers shared by the readers.

Conventions (docs/conventions.md): metres, OpenCV camera frame (x right, y down, z
forward), joints in handfit's canonical order (``handfit.skeleton``), pixel
coordinates with ``u = fx * x / z + cx``. The intrinsics are the dataset's own;
no reader shifts them by half a pixel (which pixel-centre convention each dataset
used is not documented anywhere we could check).

Joints a dataset does not label (Dexter+Object labels only the five fingertips)
are NaN in ``joints3d`` and ``joints2d`` and ``False`` in ``visible``. A joint is
never NaN and visible at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from handfit.errors import UserError

LEFT = "left"
RIGHT = "right"
# A record's 'side' (the TFDS builders' ClassLabel): an index into SIDES, 0 left, 1 right.
SIDES = (LEFT, RIGHT)


def is_left(side: Any, where: str = "record") -> bool:
    """Whether a record's ``side`` is the left hand: an index into :data:`SIDES` or its name.

    Raises ValueError naming ``where`` for anything else (e.g. 2, 'Left').
    """
    name = side.decode() if isinstance(side, bytes) else side
    if not isinstance(name, str) and np.ndim(name) == 0 and name in (0, 1):
        name = SIDES[int(name)]
    if isinstance(name, str) and name in SIDES:
        return name == LEFT
    raise ValueError(f"{where}: side={side!r}; expected one of {SIDES} or its index 0 or 1")


@dataclasses.dataclass
class Example:
    """One hand in one image, in handfit's conventions.

    Attributes:
      image: uint8 ``[H, W, 3]`` RGB, or ``None`` when the reader was asked for
        annotations only (``reader.get(i, load_image=False)``); ``image_path``
        always names the file it comes from.
      K: float32 ``[3, 3]`` intrinsics of the camera that took ``image``.
      joints3d: float32 ``[21, 3]`` metres, camera frame, canonical order. Joint 0
        is the wrist unless ``joint0 == 'palm'`` (STB's palm centre; RHD with
        ``root='palm'``). Unlabelled joints are NaN.
      joints2d: float32 ``[21, 2]`` pixels ``(u, v)`` in ``image``.
      visible: bool ``[21]``; the dataset's visibility flag where it has one, else
        ``True`` for every labelled joint; always ``False`` for NaN joints.
      side: ``'left'`` or ``'right'``: the hand as it appears in this example
        (after mirroring, if the example was mirrored).
      dataset: ``'rhd'``, ``'stb'``, ``'dexter_object'`` or ``'freihand'``.
      sample_id: a name unique within the dataset, e.g. ``'training/00042'``.
      image_path: the image file (for error messages and lazy loading).
      joint0: what joint 0 is: ``'wrist'`` or ``'palm'``.
      mask: uint8 ``[H, W]`` in {0, 1}, the hand's silhouette, where the dataset
        has one (RHD: the chosen hand's class ids; FreiHAND: thresholded JPEG).
      mask_path: the mask's file, where there is one.
      mano_pose: float32 ``[48]`` axis-angle (3 global + 45), relative to MANO's
        mean hand (``flat_hand_mean=False``) (FreiHAND).
      mano_shape: float32 ``[10]`` (FreiHAND).
      mano_uv_root: float32 ``[2]`` the root's pixel position (FreiHAND's 61
        numbers 58:60).
      mano_scale: float32 scalar (FreiHAND's number 60).
      vertices: float32 ``[V, 3]`` metres, camera frame (FreiHAND).
      mirrored: whether :func:`mirror` produced this example from the dataset's
        own (left) hand.
    """

    image: np.ndarray | None
    K: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray
    visible: np.ndarray
    side: str
    dataset: str
    sample_id: str
    image_path: str
    joint0: str = "wrist"
    mask: np.ndarray | None = None
    mask_path: str | None = None
    mano_pose: np.ndarray | None = None
    mano_shape: np.ndarray | None = None
    mano_uv_root: np.ndarray | None = None
    mano_scale: np.ndarray | None = None
    vertices: np.ndarray | None = None
    mirrored: bool = False

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image (from the image, else from the dataset)."""
        if self.image is not None:
            return tuple(self.image.shape[:2])
        return IMAGE_SIZES[self.dataset]


# (height, width) of each dataset's colour images.
IMAGE_SIZES = {
    "rhd": (320, 320),
    "stb": (480, 640),
    "dexter_object": (480, 640),
    "freihand": (224, 224),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a user needs to know to get a dataset and put it where handfit looks."""

    name: str
    url: str
    folder: str  # the dataset's folder under ``data_dir``
    layout: str  # what must be inside it


class DatasetNotFoundError(FileNotFoundError, UserError):
    """A dataset folder or file is missing; the message says where to get it and where to put it."""


class AnnotationError(UserError, ValueError):
    """An annotation file holds something other than what the dataset's format promises."""


def missing(info: DatasetInfo, path: str | os.PathLike, data_dir: str | os.PathLike) -> str:
    """The message for a missing dataset path."""
    return (
        f"{info.name}: missing {os.fspath(path)!r}. Download {info.name} from {info.url} "
        f"and unpack it so that {os.path.join(os.fspath(data_dir), info.folder)!r} holds:\n"
        f"{info.layout}\n(data_dir={os.fspath(data_dir)!r} is the reader's `data_dir` argument; "
        f"passing the dataset folder itself also works.)"
    )


def resolve_root(info: DatasetInfo, data_dir: str | os.PathLike, marker: str) -> str:
    """The dataset's folder: ``data_dir/<info.folder>``, else ``data_dir`` itself.

    Whichever holds ``marker`` wins. Raises DatasetNotFoundError naming the missing path otherwise.
    """
    data_dir = os.fspath(data_dir)
    candidate = os.path.join(data_dir, info.folder)
    if os.path.exists(os.path.join(candidate, marker)):
        return candidate
    if os.path.exists(os.path.join(data_dir, marker)):
        return data_dir
    if not os.path.isdir(data_dir):
        raise DatasetNotFoundError(missing(info, data_dir, data_dir))
    if not os.path.isdir(candidate):
        raise DatasetNotFoundError(missing(info, candidate, data_dir))
    raise DatasetNotFoundError(missing(info, os.path.join(candidate, marker), data_dir))


def require_file(info: DatasetInfo, path: str, data_dir: str | os.PathLike) -> str:
    """Returns ``path`` if it is a file, else raises DatasetNotFoundError naming it."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(missing(info, path, data_dir))
    return path


def check_array(
    value: Any,
    shape: Sequence[int | None],
    *,
    dataset: str,
    file: str,
    field: str,
    finite: bool = True,
    dtype=np.float32,
) -> np.ndarray:
    """``value`` as an array of ``shape`` (``None`` = any size), else AnnotationError.

    The error names the dataset, the file, the field (with the sample) and the expected shape.
    """
    shape_text = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise AnnotationError(
            f"{dataset}: {file}: field {field} is not a numeric array of shape {shape_text} ({e})"
        ) from e
    if array.ndim != len(shape) or any(
        s is not None and s != n for s, n in zip(shape, array.shape, strict=True)
    ):
        raise AnnotationError(
            f"{dataset}: {file}: field {field} has shape {tuple(array.shape)}, "
            f"expected {shape_text}"
        )
    if finite and np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise AnnotationError(
            f"{dataset}: {file}: field {field} holds NaN or inf (first at index {bad})"
        )
    return array


def _load(path: str, size: tuple[int, int], dataset: str, sample: str, kind: str, convert):
    """``convert(image)`` of the image at ``path``, whose ``(height, width)`` must be ``size``.

    The size is checked from the file's header, before decoding; errors name the dataset,
    the sample and the file: DatasetNotFoundError when it is missing, AnnotationError when
    it cannot be read, is too large to decode safely (PIL's decompression-bomb limit) or has
    another size.
    """
    where = f"{dataset}: sample {sample}: {kind} {path!r}"
    expected = f"expected {size[1]}x{size[0]} (width x height)"
    try:
        with Image.open(path) as img:
            if img.size != (size[1], size[0]):
                raise AnnotationError(f"{where} is {img.size[0]}x{img.size[1]}, {expected}")
            return convert(img)
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{dataset}: sample {sample}: missing {kind} {path!r}") from e
    except Image.DecompressionBombError as e:
        raise AnnotationError(f"{where} is too large to decode safely ({e}); {expected}") from e
    except OSError as e:
        raise AnnotationError(f"{where} cannot be read ({e})") from e


def load_rgb(path: str, size: tuple[int, int], dataset: str, sample: str) -> np.ndarray:
    """Reads an image as uint8 ``[H, W, 3]`` RGB and checks its ``(height, width)``."""
    return _load(path, size, dataset, sample, "image", lambda img: np.asarray(img.convert("RGB")))


def load_gray(
    path: str, size: tuple[int, int], dataset: str, sample: str, *, labels: bool = False
) -> np.ndarray:
    """Reads a single-channel image as uint8 ``[H, W]`` (palette indices kept as they are).

    A colour image is converted to grey levels, unless ``labels`` (the pixels are class ids,
    as RHD's masks): then only a colour image whose channels are all equal is accepted, and
    any other is refused with AnnotationError naming the file (its grey levels would be read
    as class ids).
    """

    def convert(img: Image.Image) -> np.ndarray:
        if img.mode not in ("RGB", "RGBA", "LA"):
            return np.asarray(img)
        if labels:
            rgb = np.asarray(img.convert("RGB"))
            if not (rgb == rgb[..., :1]).all():
                raise AnnotationError(
                    f"{dataset}: sample {sample}: mask {path!r} is a colour image ({img.mode}); "
                    f"expected one channel of class ids (8-bit grey or palette PNG, as the "
                    f"dataset ships it): was it converted or re-saved?"
                )
            return rgb[..., 0].copy()
        return np.asarray(img.convert("L"))

    return _load(path, size, dataset, sample, "mask", convert)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Projects camera-frame points ``[..., 3]`` with K ``[3, 3]`` to pixels ``[..., 2]``."""
    points = np.asarray(points, np.float64)
    uvw = points @ np.asarray(K, np.float64).T
    return (uvw[..., :2] / uvw[..., 2:3]).astype(np.float32)


def mirror(example: Example) -> Example:
    """Mirrors a hand left <-> right: image, mask, K, joints and vertices flipped consistently.

    The image is flipped left-right (width W); with pixel centres at ``c + 0.5``
    pixel ``c`` goes to ``W - 1 - c``, so ``u' = W - u``. Points go to
    ``x' = -x``; the intrinsics become ``K' = A K D`` with ``A`` the image flip
    and ``D = diag(-1, 1, 1)``, i.e. ``cx' = W - cx`` (and skew negated), so that
    projecting the mirrored joints with ``K'`` gives the mirrored 2D joints.
    MANO pose axis-angles get their y and z negated (MANO's left/right relation);
    ``mano_uv_root`` is flipped like the 2D joints. ``side`` is swapped.
    """
    height, width = example.image_size
    flip_image = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    flip_x = np.diag([-1.0, 1.0, 1.0])
    K = (flip_image @ example.K.astype(np.float64) @ flip_x).astype(np.float32)
    joints3d = example.joints3d * np.array([-1.0, 1.0, 1.0], np.float32)
    joints2d = example.joints2d.copy()
    joints2d[:, 0] = width - joints2d[:, 0]
    out = dataclasses.replace(
        example,
        image=None if example.image is None else np.ascontiguousarray(example.image[:, ::-1]),
        mask=None if example.mask is None else np.ascontiguousarray(example.mask[:, ::-1]),
        K=K,
        joints3d=joints3d.astype(np.float32),
        joints2d=joints2d.astype(np.float32),
        side=RIGHT if example.side == LEFT else LEFT,
        mirrored=not example.mirrored,
    )
    if example.vertices is not None:
        out.vertices = (example.vertices * np.array([-1.0, 1.0, 1.0])).astype(np.float32)
    if example.mano_pose is not None:
        out.mano_pose = (
            (example.mano_pose.reshape(-1, 3) * np.array([1.0, -1.0, -1.0]))
            .reshape(-1)
            .astype(np.float32)
        )
    if example.mano_uv_root is not None:
        out.mano_uv_root = np.array(
            [width - example.mano_uv_root[0], example.mano_uv_root[1]], np.float32
        )
    return out


def finish(example: Example, mirror_left: bool) -> Example:
    """Final checks shared by the readers; mirrors left hands when asked."""
    invalid = ~np.isfinite(example.joints3d).all(-1) | ~np.isfinite(example.joints2d).all(-1)
    example.visible = example.visible & ~invalid
    if mirror_left and example.side == LEFT:
        return mirror(example)
    return example


def check_index(index: int, length: int, dataset: str) -> int:
    """Python-style index (negative allowed) into a reader of ``length``, else IndexError."""
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{dataset}: index out of range for {length} examples")
    return index
