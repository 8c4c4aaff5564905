"""Pinhole and weak-perspective cameras as pytrees: projection, crops and resizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Camera:
    """Intrinsics of an OpenCV camera (x right, y down, z forward), perspective or weak.

    Pixel (row r, col c) covers [c, c+1) x [r, r+1) in continuous pixel coordinates, so its
    centre is (c + 0.5, r + 0.5).

    * perspective (``weak=False``): ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
    * weak perspective, i.e. scaled orthographic (``weak=True``):
      ``u = fx * x / ref_depth + cx``, ``v = fy * y / ref_depth + cy``; the depth used for
      z-buffering is still ``z``.

    Data fields (traced, each of shape [] or [B] for one camera per image): ``fx, fy, cx, cy``
    in pixels and ``ref_depth`` (same unit as the points; used by the weak mode only).
    Static fields (they fix shapes or code paths): ``height, width`` (ints, pixels), ``weak``
    (bool) and ``near`` (the near plane: faces with a vertex at ``z < near`` are not drawn by
    the perspective renderers; ignored in the weak mode).
    """

    fx: Array
    fy: Array
    cx: Array
    cy: Array
    height: int
    width: int
    ref_depth: Array = 1.0
    weak: bool = False
    near: float = 1e-3

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the image in pixels."""
        return (self.height, self.width)


jax.tree_util.register_dataclass(
    Camera,
    data_fields=["fx", "fy", "cx", "cy", "ref_depth"],
    meta_fields=["height", "width", "weak", "near"],
)


def _f32(x) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def perspective_camera(fx, fy, cx, cy, height: int, width: int, *, near: float = 1e-3) -> Camera:
    """A perspective camera; ``fx .. cy``: [] or [B] (pixels)."""
    intrinsics = [_f32(v) for v in (fx, fy, cx, cy)]
    ref_depth = jnp.ones((), jnp.float32)
    return Camera(*intrinsics, int(height), int(width), ref_depth, weak=False, near=float(near))


def crop_camera(K: Array, size: int) -> Camera:
    """The perspective camera of square crops of side ``size`` (pixels) with intrinsics
    ``K [B, 3, 3]`` (fields [B]) or ``[3, 3]`` (fields [])."""
    return perspective_camera(K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], size, size)


def weak_perspective_camera(scale, cx, cy, height: int, width: int, *, scale_y=None) -> Camera:
    """A scaled orthographic camera: ``u = scale * x + cx``, ``v = scale_y * y + cy``.

    ``scale`` (pixels per unit length), ``cx``, ``cy``: [] or [B]. ``scale_y`` defaults to
    ``scale``. Equivalent to a perspective camera with focal length ``f`` looking at a
    subject at depth ``z0`` when ``scale = f / z0``.
    """
    scale = _f32(scale)
    scale_y = scale if scale_y is None else _f32(scale_y)
    cx, cy, ref_depth = _f32(cx), _f32(cy), jnp.ones((), scale.dtype)
    return Camera(scale, scale_y, cx, cy, int(height), int(width), ref_depth, weak=True, near=0.0)


def as_weak(camera: Camera, ref_depth) -> Camera:
    """The weak-perspective approximation of ``camera`` about depth ``ref_depth`` ([] or [B])."""
    return dataclasses.replace(camera, ref_depth=_f32(ref_depth), weak=True)


def project_with_depth(points: Array, camera: Camera) -> tuple[Array, Array]:
    """Pixel coordinates and depth of points.

    Args:
      points: [..., N, 3] in camera coordinates. When the camera's fields have shape [B],
        ``points`` must have shape [B, N, 3].
      camera: the camera.

    Returns:
      uv: [..., N, 2] continuous pixel coordinates (u = column + 0.5 at a pixel centre).
      depth: [..., N] the z coordinate (the same in both camera modes).

    In the perspective mode, points with ``z < near`` are projected as if at ``z = near`` so
    that values and gradients stay finite; the renderers drop faces that touch them.
    """
    points = jnp.asarray(points)
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"project: points must have shape [..., N, 3], got {points.shape}")
    fx, fy, cx, cy, zr = (
        jnp.asarray(v)[..., None]
        for v in (camera.fx, camera.fy, camera.cx, camera.cy, camera.ref_depth)
    )
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    if camera.weak:
        inv = 1.0 / zr
    else:
        inv = 1.0 / jnp.maximum(z, max(camera.near, 1e-12))
    u = fx * x * inv + cx
    v = fy * y * inv + cy
    return jnp.stack([u, v], axis=-1), z


def project(points: Array, camera: Camera) -> Array:
    """Pixel coordinates of points: [..., N, 3] -> [..., N, 2] (see ``project_with_depth``)."""
    return project_with_depth(points, camera)[0]


def crop_resize(camera: Camera, box: Sequence | Array, size: tuple[int, int] | int) -> Camera:
    """The camera of a crop of the image, resampled to ``size``.

    Args:
      camera: the camera of the full image.
      box: the crop in continuous pixel coordinates of the full image, ``(x0, y0, w, h)`` or
        ``(x0, y0, side)`` for a square; each entry a scalar or [B]. The crop covers
        [x0, x0 + w) x [y0, y0 + h): pixel (r, c) of the full image is inside when
        ``x0 <= c`` and ``c + 1 <= x0 + w`` (and likewise for rows).
      size: (out_height, out_width) or one int for a square output.

    Returns:
      A camera with ``height, width = size`` whose pixel centres map to the matching points
      of the crop: continuous coordinate ``u`` becomes ``(u - x0) * out_width / w``.
    """
    if isinstance(size, int):
        size = (size, size)
    out_h, out_w = (int(s) for s in size)
    if len(box) == 3:
        x0, y0, w = box
        h = w
    elif len(box) == 4:
        x0, y0, w, h = box
    else:
        raise ValueError(f"crop_resize: box must be (x0, y0, w, h) or (x0, y0, side), got {box}")
    sx = out_w / _f32(w)
    sy = out_h / _f32(h)
    return dataclasses.replace(
        camera,
        fx=camera.fx * sx,
        fy=camera.fy * sy,
        cx=(camera.cx - _f32(x0)) * sx,
        cy=(camera.cy - _f32(y0)) * sy,
        height=out_h,
        width=out_w,
    )


def resize(camera: Camera, size: tuple[int, int] | int) -> Camera:
    """The camera of the whole image resampled to ``size`` = (height, width) or an int."""
    return crop_resize(camera, (0.0, 0.0, float(camera.width), float(camera.height)), size)


def batch_camera(camera: Camera, batch: int) -> Camera:
    """The camera with every data field broadcast to shape [batch]; errors name bad fields."""
    fields = {}
    for name in ("fx", "fy", "cx", "cy", "ref_depth"):
        v = jnp.asarray(getattr(camera, name))
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, batch)):
            raise ValueError(
                f"camera.{name} must have shape [] or [{batch}] (the batch of vertices), "
                f"got {v.shape}"
            )
        if not jnp.issubdtype(v.dtype, jnp.floating):
            v = v.astype(jnp.float32)
        fields[name] = jnp.broadcast_to(v, (batch,))
    return dataclasses.replace(camera, **fields)
