"""Differentiable rendering: cameras, soft silhouettes, hard rasterisation, textures."""

from handfit.render.camera import (
    Camera,
    as_weak,
    batch_camera,
    crop_camera,
    crop_resize,
    perspective_camera,
    project,
    project_with_depth,
    resize,
    weak_perspective_camera,
)
from handfit.render.raster import Fragments, interpolate, rasterize
from handfit.render.soft import (
    SoftSilhouette,
    candidate_count,
    cutoff_radius,
    soft_silhouette,
    soft_silhouette_dense,
)
from handfit.render.texture import Shaded, composite, shade, vertex_normals

__all__ = [
    "Camera",
    "Fragments",
    "Shaded",
    "SoftSilhouette",
    "as_weak",
    "batch_camera",
    "candidate_count",
    "composite",
    "crop_camera",
    "crop_resize",
    "cutoff_radius",
    "interpolate",
    "perspective_camera",
    "project",
    "project_with_depth",
    "rasterize",
    "resize",
    "shade",
    "soft_silhouette",
    "soft_silhouette_dense",
    "vertex_normals",
    "weak_perspective_camera",
]
