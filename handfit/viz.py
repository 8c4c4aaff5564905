"""Pictures and files for people: mesh export (trimesh) and shaded mesh previews."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def export_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Writes one mesh (``vertices [V, 3]``, ``faces [F, 3]``) as .obj, .ply, .glb or .stl."""
    import trimesh

    trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False).export(os.fspath(path))


def _draw_mesh(ax, vertices, faces, view, joints=None, color=(0.87, 0.62, 0.48)):
    """Paints a mesh in orthographic projection along +z of ``view`` (back to front)."""
    from matplotlib.collections import PolyCollection

    v = vertices @ view.T
    tri = v[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    order = np.argsort(-tri[:, :, 2].mean(1))
    light = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0, 1)
    colors = np.clip(shade[order, None] * np.asarray(color)[None], 0, 1)
    ax.add_collection(PolyCollection(tri[order][:, :, :2], facecolors=colors, edgecolors="none"))
    if joints is not None:
        j = joints @ view.T
        ax.plot(j[:, 0], j[:, 1], ".", color="tab:blue", ms=3)
    lo, hi = v[:, :2].min(0), v[:, :2].max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.1
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] + half, centre[1] - half)  # image convention: y down
    ax.set_aspect("equal")
    ax.set_axis_off()


def mesh_grid_png(
    path: str | os.PathLike,
    meshes: Sequence[np.ndarray],
    faces: np.ndarray,
    titles: Sequence[str],
    joints: Sequence[np.ndarray] | None = None,
    suptitle: str = "",
) -> None:
    """Front (camera) and side views of several meshes ``[V, 3]`` in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = {"front": np.eye(3), "side": np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])}
    fig, axes = plt.subplots(2, len(meshes), figsize=(2.4 * len(meshes), 5.2), squeeze=False)
    for i, vertices in enumerate(meshes):
        for row, (name, view) in enumerate(views.items()):
            _draw_mesh(
                axes[row, i],
                np.asarray(vertices),
                np.asarray(faces),
                view,
                None if joints is None else np.asarray(joints[i]),
            )
            axes[row, i].set_title(f"{titles[i]} ({name})", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)
    plt.close(fig)
