"""``--mode=refine``: fit the hand model to the images, 2D keypoints and masks of a folder.

Input (``--config.refine.input=FOLDER``): for each image ``NAME.png`` / ``.jpg`` /
``.jpeg``, a JSON file ``NAME.json`` beside it::

    {"keypoints": [[x, y], ... 21 pairs],   # pixels of the image, handfit.skeleton's order
     "visibility": [1, 0, ...],             # optional, 21 numbers; 0 ignores a joint
     "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}   # optional intrinsics

Pixel (row r, column c) covers [c, c + 1) x [r, r + 1), so its centre is (c + 0.5, r + 0.5).
Without ``K`` the camera is ``fx = fy = focal * max(H, W)`` (``config.refine.focal``),
centred. An optional mask ``NAME_mask.png`` (same size; grey levels / 255, > 0 is hand)
adds the silhouette term. Images without a JSON are skipped (and listed).

Output in ``WORKDIR/refine/``: ``NAME.obj`` (the mesh in camera space, metres),
``NAME.json`` (the 63 parameters by group, joints in 3D and 2D, the camera, the loss) and
``NAME_overlay.png`` (the image, the fitted mesh's silhouette and its 2D skeleton in
green, the given keypoints in red).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image, ImageDraw

from handfit import mano, refine, render, skeleton, viz
from handfit.params import MeshParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_keypoints(path: Path, height: int, width: int, focal: float):
    """(joints2d [21, 2], visibility [21], camera) from a keypoint JSON; errors name the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict) or "keypoints" not in data:
        raise ValueError(f'{path}: expected an object with "keypoints": [[x, y] x 21]')
    n = skeleton.NUM_JOINTS
    try:
        kp = np.asarray(data["keypoints"], np.float32)
        vis = np.asarray(data.get("visibility", np.ones(n)), np.float32)
        k = np.asarray(data["K"], np.float32) if "K" in data else None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: keypoints, visibility and K must be numbers ({e})") from e
    if kp.shape != (n, 2):
        raise ValueError(f"{path}: keypoints must be {n} [x, y] pairs, got shape {kp.shape}")
    if vis.shape != (n,):
        raise ValueError(f"{path}: visibility must have {n} entries, got shape {vis.shape}")
    if not np.all(np.isfinite(kp[vis > 0])):
        raise ValueError(f"{path}: visible keypoints must be finite numbers")
    kp = np.where(vis[:, None] > 0, kp, 0.0)  # unknown joints may be written as null/NaN
    if k is None:
        f = focal * max(height, width)
        k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float32)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"{path}: K must be a 3x3 intrinsics matrix with fx, fy > 0, got {k}")
    camera = render.perspective_camera(k[0, 0], k[1, 1], k[0, 2], k[1, 2], height, width)
    return kp, vis, camera


def _read_image(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except OSError as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def _overlay(image: np.ndarray, mask: np.ndarray, joints2d: np.ndarray, given: np.ndarray,
             visible: np.ndarray) -> Image.Image:  # fmt: skip
    """The image with the mesh silhouette tinted, its skeleton (green) and the keypoints (red)."""
    rgb = image.astype(np.float32)
    tint = np.array([80.0, 160.0, 255.0])
    rgb = np.where(mask[..., None] > 0, 0.5 * rgb + 0.5 * tint, rgb)
    out = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    r = max(1.5, max(image.shape[:2]) / 150)
    for a, b in skeleton.BONES:
        draw.line([tuple(joints2d[a]), tuple(joints2d[b])], fill=(40, 220, 40), width=2)
    for (x, y), v in zip(given, visible, strict=True):
        if v > 0:
            draw.ellipse([x - r, y - r, x + r, y + r], outline=(230, 30, 30), width=2)
    return out


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    start: Callable[[np.ndarray, np.ndarray, render.Camera], MeshParams] | None = None,
) -> list[Path]:
    """Fits every image of ``config.refine.input`` that has a keypoint JSON (module doc).

    Args:
      config: the full config (``hand``, ``refine``).
      workdir: outputs go to ``workdir/refine``.
      start: where refinement starts instead of ``refine.fit``'s coarse alignment:
        ``start(image [H, W, 3] uint8, keypoints [21, 2], camera) -> MeshParams`` (batch 1),
        e.g. a trained DHPE's estimate (the hook for checkpoint-based starts).
    Returns:
      The files written.
    """
    folder = Path(config.refine.input)
    if not config.refine.input or not folder.is_dir():
        raise FileNotFoundError(
            f"--config.refine.input={config.refine.input!r} is not a folder: give a folder of "
            "images with a NAME.json of 2D keypoints beside each (see handfit/refine_cli.py)"
        )
    images = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask")
    )
    todo = [p for p in images if p.with_suffix(".json").is_file()]
    skipped = [p.name for p in images if p not in todo]
    if not todo:
        raise FileNotFoundError(
            f"{folder}: no image with a keypoint JSON beside it (NAME.png + NAME.json); "
            f"images found: {[p.name for p in images]}"
        )
    if skipped:
        print(f"skipping {len(skipped)} images without a JSON: {skipped}")
    model = mano.get_model(config.hand.model_path, config.hand.side)
    cfg = refine.RefineConfig.from_config(config.refine)
    out_dir = Path(workdir) / "refine"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in todo:
        image = _read_image(path, "RGB")
        h, w = image.shape[:2]
        kp, vis, camera = _read_keypoints(path.with_suffix(".json"), h, w, config.refine.focal)
        mask_path = path.with_name(path.stem + "_mask.png")
        mask = None
        if mask_path.is_file():
            mask = _read_image(mask_path, "L").astype(np.float32) / 255.0
            if mask.shape != (h, w):
                raise ValueError(f"{mask_path}: mask is {mask.shape}, the image is {(h, w)}")
            mask = jnp.asarray(mask[None])
        if start is None:
            res = refine.fit(kp[None], vis[None], camera, model, mask=mask, config=cfg)
        else:
            evidence = refine.Evidence(jnp.asarray(kp[None]), jnp.asarray(vis[None]), mask)
            res = refine.refine(start(image, kp, camera), evidence, model, camera, cfg)
        written += _write(out_dir / path.stem, image, kp, vis, camera, model, res)
        err = np.linalg.norm(np.asarray(res.joints2d[0]) - kp, axis=-1)
        print(
            f"{path.name}: 2D error {np.sum(err * vis) / max(vis.sum(), 1):.2f} px over "
            f"{int(vis.sum())} joints, final loss {float(res.losses[-1, 0]):.3g} ({model.name})"
        )
    return written


def _write(stem: Path, image, kp, vis, camera, model, res: refine.RefineResult) -> list[Path]:
    mesh_path = stem.with_suffix(".obj")
    viz.export_mesh(mesh_path, np.asarray(res.vertices[0]), np.asarray(model.faces))
    frags = render.rasterize(res.vertices, model.faces, camera)
    overlay_path = stem.with_name(stem.name + "_overlay.png")
    overlay = _overlay(image, np.asarray(frags.mask[0]), np.asarray(res.joints2d[0]), kp, vis)
    overlay.save(overlay_path)
    p = jax.tree.map(lambda x: np.asarray(x[0]).tolist(), res.params)
    record = {
        "hand_model": model.name,
        "params": p._asdict(),
        "joints3d": np.asarray(res.joints3d[0]).tolist(),
        "joints2d": np.asarray(res.joints2d[0]).tolist(),
        "camera": {k: float(getattr(camera, k)) for k in ("fx", "fy", "cx", "cy")},
        "final_loss": float(res.losses[-1, 0]) if res.losses.shape[0] else None,
    }
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=1))
    return [mesh_path, json_path, overlay_path]
