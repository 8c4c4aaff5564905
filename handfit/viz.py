"""Pictures and files for people: mesh export (trimesh), mesh previews, PCK curves, overlays
(a crop's prediction and truth; fitted hands over their photo)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np


def export_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Writes one mesh (``vertices [V, 3]``, ``faces [F, 3]``) as .obj, .ply, .glb or .stl."""
    import trimesh

    trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False).export(os.fspath(path))


def export_scene(path: str | os.PathLike, meshes: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Writes several meshes (``(vertices [V, 3], faces [F, 3])`` each) into one file (.glb)."""
    import trimesh

    parts = [trimesh.Trimesh(np.asarray(v), np.asarray(f), process=False) for v, f in meshes]
    trimesh.Scene(parts).export(os.fspath(path))


def _face_normals(tri: np.ndarray) -> np.ndarray:
    """Unit normals ``[F, 3]`` of triangles ``[F, 3, 3]`` (counter-clockwise: outwards)."""
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return normal / (np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12)


def _draw_mesh(ax, vertices, faces, view, joints=None, color=(0.87, 0.62, 0.48)):
    """Paints a mesh in orthographic projection along +z of ``view`` (back to front)."""
    from matplotlib.collections import PolyCollection

    v = vertices @ view.T
    tri = v[faces]
    normal = _face_normals(tri)
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pck_plot_png(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    *,
    title: str,
    xlabel: str = "error threshold (mm)",
    reference_auc: float | None = None,
    reference_label: str = "paper",
) -> None:
    """PCK curves in one PNG: ``curves`` maps a label to ``(thresholds [T], pck [T], auc)``.

    The AUC is written in each curve's legend entry; ``reference_auc`` (e.g. the paper's
    figure for this dataset) is drawn as a horizontal line at that PCK level and named in the
    legend, since the paper's curves are not available, only their AUC.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for label, (thresholds, pck, area) in curves.items():
        ax.plot(
            np.asarray(thresholds), np.asarray(pck), marker=".", label=f"{label} (AUC {area:.3f})"
        )
    if reference_auc is not None:
        ax.axhline(
            reference_auc,
            color="0.4",
            ls="--",
            lw=1,
            label=f"{reference_label}: AUC {reference_auc:.3f}",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PCK")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)


def read_metrics(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``metrics.jsonl`` (a JSON object with 'step' per line) as ``{name: (steps, values)}``."""
    import json

    series: dict[str, tuple[list, list]] = {}
    with open(os.fspath(path)) as f:
        for line in f:
            row = json.loads(line)
            for name, value in row.items():
                if name != "step":
                    steps, values = series.setdefault(name, ([], []))
                    steps.append(row["step"])
                    values.append(value)
    return {k: (np.asarray(s), np.asarray(v, float)) for k, (s, v) in series.items()}


CURVES_PNG = "learning_curves.png"  # the learning curves' file name (workdir, eval report)

# Panels of the learning curves: title -> the metrics drawn in it (a name ending in '/' is
# a prefix).
CURVE_PANELS = (
    ("articulation (Eq. 8), after the best rotation", ("articulation", "aligned_articulation")),
    ("heat maps (Eq. 3)", ("heatmap",)),
    ("2D joints: keypoints, refiner (Eq. 6), projection", ("keypoints", "refiner", "projection")),
    (
        "shape (Eq. 9), mask head f_S, feature (Eq. 2), Laplacian, pose prior",
        ("shape", "mask", "feature", "laplacian", "pose_prior"),
    ),
    ("total (Eq. 7)", ("total",)),
    ("Eq. 12 gate: fraction open", ("shape_gate",)),
    ("gradient norm per module", ("grad_norm/",)),
    ("learning rate", ("learning_rate",)),
)


def _in_panel(name: str, members: Sequence[str]) -> bool:
    return any(name == m or (m.endswith("/") and name.startswith(m)) for m in members)


def learning_curves_png(
    path: str | os.PathLike, series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = ""
) -> None:
    """Every loss term, the gate fraction, per-module gradient norms and the learning rate.

    ``series`` is :func:`read_metrics`' output. Training values are lines; validation values
    (names ``val/<term>``) are dots of the same colour in the same panel. Losses and norms are
    drawn on a log scale.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (panel, members) in zip(axes.flat, CURVE_PANELS):
        log = not panel.startswith(("Eq. 12", "learning"))

        def shown(values, log=log):  # a log axis cannot show 0 (Eq. 9 while the gate is shut)
            return np.where(values > 0, values, np.nan) if log else values

        for i, (name, (steps, values)) in enumerate(
            (k, v) for k, v in series.items() if _in_panel(k, members)
        ):
            colour = f"C{i}"
            ax.plot(steps, shown(values), color=colour, lw=1.2, label=name)
            if f"val/{name}" in series:
                vs, vv = series[f"val/{name}"]
                ax.plot(vs, shown(vv), "o", color=colour, ms=4, label=f"val/{name}")
        if panel.startswith("Eq. 12"):
            ax.set_ylim(-0.02, 1.02)
        elif log and ax.lines:
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=80)
    plt.close(fig)


def _draw_skeleton(ax, joints2d: np.ndarray, color: str, label: str) -> None:
    """Bones (``skeleton.BONES``) and joints of canonical 2D joints ``[21, 2]`` (pixels)."""
    from handfit import skeleton

    for parent, child in skeleton.BONES:
        ax.plot(*joints2d[[parent, child]].T, color=color, lw=1.2)
    ax.plot(*joints2d.T, ".", color=color, ms=4, label=label)


def overlay_png(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    mask_pred: np.ndarray | None = None,
    mask_true: np.ndarray | None = None,
    joints2d_pred: np.ndarray | None = None,
    joints2d_true: np.ndarray | None = None,
    vertices2d: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Three panels over one crop: mask, skeleton, mesh outline. Predictions red, truth green.

    Args:
      image: [S, S, 3] in [0, 1].
      mask_pred: [S, S] the rendered mesh's mask (tinted); mask_true: [S, S] (its contour).
      joints2d_pred, joints2d_true: [21, 2] canonical joints in crop pixels.
      vertices2d: [V, 2] projected mesh vertices (pixels) and faces [F, 3]: the wireframe.
    """
    plt = _pyplot()
    image = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    size = image.shape[0]
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.3))
    # Pixel (r, c) covers [c, c + 1) x [r, r + 1): the extent puts pixel centres at +0.5.
    extent = (0, image.shape[1], image.shape[0], 0)
    for ax in axes:
        ax.imshow(image, extent=extent)
        ax.set_axis_off()
    centres = np.arange(size) + 0.5
    if mask_pred is not None:
        tint = np.zeros(image.shape[:2] + (4,))
        tint[..., 0], tint[..., 3] = 1.0, 0.45 * (np.asarray(mask_pred) > 0.5)
        axes[0].imshow(tint, extent=extent)
    if mask_true is not None and np.any(np.asarray(mask_true) > 0.5):
        mask = np.asarray(mask_true, np.float64)
        axes[0].contour(centres, centres, mask, levels=[0.5], colors="lime", linewidths=1.0)
    axes[0].set_title("mask (rendered red, truth green)", fontsize=7)
    if joints2d_true is not None:
        _draw_skeleton(axes[1], np.asarray(joints2d_true), "lime", "truth")
    if joints2d_pred is not None:
        _draw_skeleton(axes[1], np.asarray(joints2d_pred), "red", "prediction")
    axes[1].set_title("skeleton (prediction red, truth green)", fontsize=7)
    if vertices2d is not None and faces is not None:
        from matplotlib.collections import PolyCollection

        tri = np.asarray(vertices2d)[np.asarray(faces)]
        outline = PolyCollection(
            tri, facecolors="none", edgecolors="red", linewidths=0.2, alpha=0.6
        )
        axes[2].add_collection(outline)
    axes[2].set_title("mesh outline", fontsize=7)
    for ax in axes:
        ax.set_xlim(0, image.shape[1])
        ax.set_ylim(image.shape[0], 0)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)


def augment_preview_png(
    path: str | os.PathLike, seeds: np.ndarray, generated: Mapping[str, np.ndarray]
) -> None:
    """A grid of Sec. 3.5's generated examples under their seed crops, pixel for pixel.

    Row 1: the seed crops ``seeds [n, S, S, 3]`` in [0, 1]; row j + 1: the j-th example
    generated from each (``augment.Augmented.batch``: image [n * k, S, S, 3], mask
    [n * k, S, S], joints2d [n * k, 21, 2], example ``b * k + j`` from seed ``b``) with the
    mask's outline (green) and the 2D joints (red pixels).
    """
    from PIL import Image

    n, size = len(seeds), seeds.shape[1]
    k, extra = divmod(len(generated["image"]), n)
    if extra:
        raise ValueError(
            f"augment_preview_png: {len(generated['image'])} generated examples for {n} seeds; "
            f"expected the same number from each"
        )
    images = np.asarray(generated["image"]).reshape(n, k, size, size, 3)
    masks = np.asarray(generated["mask"]).reshape(n, k, size, size)
    joints = np.asarray(generated["joints2d"]).reshape(n, k, -1, 2)
    tiles = [np.asarray(seeds)]
    for j in range(k):
        tile = images[:, j].copy()
        edge = (masks[:, j] > 0) & ~(
            (np.roll(masks[:, j], 1, 1) > 0) & (np.roll(masks[:, j], 1, 2) > 0)
        )
        tile[edge] = (0.0, 1.0, 0.0)
        for b in range(n):
            cols, rows = np.clip(joints[b, j].astype(int).T, 0, size - 1)
            tile[b, rows, cols] = (1.0, 0.0, 0.0)
        tiles.append(tile)
    grid = np.concatenate([np.concatenate(list(row), 1) for row in tiles], 0)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(os.fspath(path))


# Fill colours (RGB) of the hands of one image, in turn.
HAND_COLOURS = ((80, 160, 255), (255, 170, 60), (190, 110, 255), (90, 220, 170))


class OverlayHand(NamedTuple):
    """One fitted hand to draw over its image: ``vertices [V, 3]`` camera space (metres),
    ``faces [F, 3]``, its projected ``joints2d [21, 2]`` and the ``keypoints [21, 2]`` with
    ``visibility [21]`` it was fitted to (pixels)."""

    vertices: np.ndarray
    faces: np.ndarray
    joints2d: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray


def hands_overlay(image: np.ndarray, camera, hands: Sequence[OverlayHand]):
    """The image (uint8 [H, W, 3]) as a PIL image with each hand's mesh (flat-shaded faces
    drawn back to front, translucent, ``HAND_COLOURS`` in turn), its projected skeleton
    (green) and its keypoints (red circles). A hand with a vertex behind the camera's
    ``near`` plane gets no mesh. ``camera``: a ``handfit.render.Camera`` of the image."""
    import jax.numpy as jnp
    from PIL import Image, ImageDraw

    from handfit import render, skeleton

    out = Image.fromarray(image).convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    polys = []
    for i, hand in enumerate(hands):
        tri = hand.vertices[hand.faces]  # [F, 3, 3]
        if np.any(tri[..., 2] <= camera.near):
            continue
        uv = render.project(jnp.asarray(hand.vertices[None], jnp.float32), camera)[0]
        normal = _face_normals(tri)
        view = tri.mean(1) / np.linalg.norm(tri.mean(1), axis=-1, keepdims=True)
        light = 0.35 + 0.65 * np.abs(np.sum(normal * view, -1))
        colour = np.asarray(HAND_COLOURS[i % len(HAND_COLOURS)])
        for depth, poly, shade in zip(
            tri[..., 2].mean(-1), np.asarray(uv)[hand.faces], light, strict=True
        ):
            polys.append((depth, poly, tuple(int(c) for c in colour * shade)))
    for _, poly, colour in sorted(polys, key=lambda p: -p[0]):
        draw.polygon([tuple(p) for p in poly], fill=colour + (170,))
    out = Image.alpha_composite(out, layer).convert("RGB")
    draw = ImageDraw.Draw(out)
    for hand in hands:
        # markers scale with the image, but no larger than the hand allows (a hand a few
        # dozen pixels wide stays visible under its 21 keypoints)
        vis = hand.visibility > 0
        extent = float(np.ptp(hand.keypoints[vis], 0).max()) if vis.any() else 0.0
        r = float(np.clip(extent / 40, 1.0, max(1.5, max(image.shape[:2]) / 200)))
        width = int(np.clip(round(extent / 80), 1, max(1, round(max(image.shape[:2]) / 400))))
        for a, b in skeleton.BONES:
            line = [tuple(hand.joints2d[a]), tuple(hand.joints2d[b])]
            draw.line(line, fill=(40, 220, 40), width=width)
        for (x, y), v in zip(hand.keypoints, hand.visibility, strict=True):
            if v > 0:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(230, 30, 30), width=width)
    return out
