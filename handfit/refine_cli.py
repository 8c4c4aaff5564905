"""``--mode=refine``: fit the hand model to every hand in a folder of images.

Input (``--config.refine.input=FOLDER``): images ``NAME.png`` / ``.jpg`` / ``.jpeg``. An image
with a JSON file ``NAME.json`` beside it that holds keypoints is fitted to them::

    {"keypoints": [[x, y], ... 21 pairs],   # pixels of the image, handfit.skeleton's order
     "visibility": [1, 0, ...],             # optional, 21 numbers; 0 ignores a joint
     "side": "right",                       # optional, 'right' (default) or 'left'
     "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}   # optional intrinsics

Every other image (no JSON, or a JSON with only ``K``) goes through the hand detector
(``handfit.detect``; ``config.detect``): each hand found is fitted to its 2D landmarks and,
as 3D evidence, its metric world landmarks (``refine.Evidence.world``), with the right or
the left hand model as the detector says. ``--config.detect.enabled=False`` skips (and lists)
such images instead.

Pixel (row r, column c) covers [c, c + 1) x [r, r + 1), so its centre is (c + 0.5, r + 0.5).
Without ``K`` the camera is ``fx = fy = focal * max(H, W)`` (``config.refine.focal``),
centred. An optional mask ``NAME_mask.png`` (same size; grey levels / 255, > 0 is hand) adds
the silhouette term for a keypoint file's hand. Files ending in ``_mask`` or ``_overlay``
are not images to fit.

Output in ``WORKDIR/refine/`` per image (``NAME`` is the image's name without its suffix, or
with it, e.g. ``hand.jpg``, when two images share a name): ``NAME.json`` (the camera and a
list of hands: side, source, detection scores and box, the 2D keypoints, the 63 parameters
by group, 3D joints in camera space, projected joints, their mean 2D error, warnings, the
mesh file), ``NAME_hand<i>.obj`` per hand (camera space, metres), ``NAME.glb`` with all of
the image's hands (glTF axes: y up, the camera at the origin looking along -z) and
``NAME_overlay.png`` (every hand's shaded mesh, its skeleton in green and the keypoints in
red over the image). Inputs are never written over. Every image is processed; failures
are listed at the end and raise ``FailedImages``.

Fits that cannot be trusted carry warnings (in the JSON and the log): no visible joints,
a hand behind or almost at the camera, a mean 2D error over 5 % of the image's longer side,
keypoints far outside the image.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from handfit import mano, refine, render, skeleton, viz
from handfit.errors import UserError
from handfit.params import MeshParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NOT_IMAGES = ("_mask", "_overlay")  # stems of masks and of this mode's own pictures
SIDES = ("right", "left")
# Warnings: the hand's nearest joint closer than this (metres) or behind the camera; a mean
# 2D error above this fraction of the image's longer side; keypoints farther outside.
MIN_DEPTH = 0.02
MAX_ERROR = 0.05
MAX_OUTSIDE = 1.0


class FailedImages(UserError):
    """Some images of the folder could not be processed (each named with its reason);
    ``main.py`` prints the list without a traceback and exits with status 2."""


@dataclasses.dataclass
class HandInput:
    """What one hand is fitted to: keypoints [21, 2] px, visibility [21], world [21, 3] m or
    None, and where they came from ('keypoints' or 'detector', with its detection)."""

    side: str
    keypoints: np.ndarray
    visibility: np.ndarray
    world: np.ndarray | None = None
    source: str = "keypoints"
    detection: dict | None = None


def _camera(k: np.ndarray | None, height: int, width: int, focal: float) -> render.Camera:
    if k is None:
        f = focal * max(height, width)
        k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float32)
    return render.perspective_camera(k[0, 0], k[1, 1], k[0, 2], k[1, 2], height, width)


def _read_json(path: Path, height: int, width: int, focal: float):
    """(HandInput or None when the file holds no keypoints, camera) from ``NAME.json``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict) or not ({"keypoints", "K"} & set(data)):
        raise ValueError(
            f'{path}: expected an object with "keypoints": [[x, y] x 21] (and optionally '
            '"visibility", "side", "K"), or with "K" alone to detect the hands'
        )
    n = skeleton.NUM_JOINTS
    try:
        k = np.asarray(data["K"], np.float32) if "K" in data else None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: K must be a 3x3 matrix of numbers ({e})") from e
    if k is not None and (
        k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0
    ):
        raise ValueError(f"{path}: K must be a 3x3 intrinsics matrix with fx, fy > 0, got {k}")
    camera = _camera(k, height, width, focal)
    if "keypoints" not in data:
        return None, camera
    try:
        kp = np.asarray(
            [[np.nan if v is None else v for v in row] for row in data["keypoints"]], np.float32
        )
        vis = np.asarray(data.get("visibility", np.ones(n)), np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: keypoints and visibility must be numbers ({e})") from e
    if kp.shape != (n, 2):
        raise ValueError(f"{path}: keypoints must be {n} [x, y] pairs, got shape {kp.shape}")
    if vis.shape != (n,) or not np.all(np.isfinite(vis)):
        raise ValueError(f"{path}: visibility must have {n} finite entries (0 or 1), got {vis}")
    if not np.all(np.isfinite(kp[vis > 0])):
        raise ValueError(
            f"{path}: visible keypoints must be finite numbers (visibility 0 for unknown ones)"
        )
    side = data.get("side", "right")
    if side not in SIDES:
        raise ValueError(f"{path}: side must be one of {SIDES}, got {side!r}")
    kp = np.where(vis[:, None] > 0, kp, 0.0)  # unknown joints may be written as null/NaN
    return HandInput(side, kp, vis), camera


def _read_image(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except OSError as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def _hand_model(config: ml_collections.ConfigDict, side: str) -> mano.HandModel:
    """The configured hand model for ``side``: a MANO file's sibling (MANO_LEFT.pkl beside
    MANO_RIGHT.pkl) when there is one, else the file (or the open hand) mirrored."""
    path = config.hand.model_path
    if path:
        name = Path(path).name
        other = {"right": ("RIGHT", "LEFT"), "left": ("LEFT", "RIGHT")}[side]
        sibling = Path(path).with_name(name.replace(other[1], other[0]))
        if other[1] in name and sibling.is_file():
            path = str(sibling)
    return mano.get_model(path, side)


class _Inputs:
    """The folder's images, their output names and their JSON files."""

    def __init__(self, folder: Path):
        self.images = sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(NOT_IMAGES)
        )
        stems = [p.stem for p in self.images]
        self.shared = {s for s in stems if stems.count(s) > 1}

    def out_name(self, image: Path) -> str:
        return image.name if image.stem in self.shared else image.stem

    def json_for(self, image: Path) -> Path | None:
        path = image.with_suffix(".json")
        if not path.is_file():
            return None
        if image.stem in self.shared:
            names = [p.name for p in self.images if p.stem == image.stem]
            raise ValueError(
                f"{path} is beside {names}: it cannot say which image it belongs "
                "to; rename the images or the file"
            )
        return path


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    start: Callable[[np.ndarray, np.ndarray, render.Camera], MeshParams] | None = None,
) -> list[Path]:
    """Fits every hand of every image of ``config.refine.input`` (module doc).

    Args:
      config: the full config (``hand``, ``refine``, ``detect``).
      workdir: outputs go to ``workdir/refine`` (never the input folder).
      start: where refinement starts instead of ``refine.fit``'s coarse alignment:
        ``start(image [H, W, 3] uint8, keypoints [21, 2], camera) -> MeshParams`` (batch 1),
        e.g. a trained DHPE's estimate (the hook for checkpoint-based starts).
    Returns:
      The files written.
    Raises:
      FailedImages after processing every image when some failed (each named, with why).
    """
    folder = Path(config.refine.input)
    if not config.refine.input or not folder.is_dir():
        raise FileNotFoundError(
            f"--config.refine.input={config.refine.input!r} is not a folder: give a folder of "
            "images (with a NAME.json of 2D keypoints beside an image to fit those instead of "
            "detecting its hands; see handfit/refine_cli.py)"
        )
    out_dir = Path(workdir) / "refine"
    if out_dir.resolve() == folder.resolve():
        raise ValueError(
            f"the input folder {folder} is this run's output folder "
            f"(WORKDIR/refine): the results would write over the inputs; "
            "choose another --workdir or copy the inputs elsewhere"
        )
    inputs = _Inputs(folder)
    if not inputs.images:
        raise FileNotFoundError(f"{folder}: no image ({', '.join(IMAGE_SUFFIXES)}) to fit")
    out_dir.mkdir(parents=True, exist_ok=True)
    fitter = _Fitter(config, start)
    written, failed, skipped = [], [], []
    for path in inputs.images:
        try:
            json_path = inputs.json_for(path)
            if json_path is None and not config.detect.enabled:
                skipped.append(path.name)
                continue
            written += fitter.image(path, json_path, out_dir / inputs.out_name(path))
        except (ValueError, FileNotFoundError, ImportError, OSError) as e:
            print(f"{path.name}: FAILED: {e}")
            failed.append(f"{path.name}: {e}")
    if skipped:
        print(f"skipped {len(skipped)} images without keypoints (detection is off): {skipped}")
    print(f"{len(inputs.images) - len(failed) - len(skipped)} images fitted into {out_dir}")
    if failed:
        raise FailedImages(
            f"{len(failed)} of {len(inputs.images)} images failed:\n  " + "\n  ".join(failed)
        )
    return written


class _Fitter:
    """Fits the hands of one image at a time; hand models and the detector made once."""

    def __init__(self, config: ml_collections.ConfigDict, start):
        self.config = config
        self.start = start
        self.cfg = refine.RefineConfig.from_config(config.refine)
        self._models: dict[str, mano.HandModel] = {}
        self._detector = None

    def model(self, side: str) -> mano.HandModel:
        if side not in self._models:
            self._models[side] = _hand_model(self.config, side)
        return self._models[side]

    def detect(self, image: np.ndarray) -> list[HandInput]:
        from handfit import detect

        if self._detector is None:
            self._detector = detect.Detector(self.config.detect)
        return [
            HandInput(
                side=h.side,
                keypoints=h.landmarks.astype(np.float32),
                visibility=np.ones(skeleton.NUM_JOINTS, np.float32),
                world=h.world,
                source="detector",
                detection={
                    "score": h.score,
                    "presence": h.presence,
                    "handedness": h.handedness,
                    "box": h.box.tolist(),
                    "crop": h.rect.tolist(),
                },
            )
            for h in self._detector(image)
        ]

    def image(self, path: Path, json_path: Path | None, stem: Path) -> list[Path]:
        image = _read_image(path, "RGB")
        h, w = image.shape[:2]
        hand, camera = (None, _camera(None, h, w, self.config.refine.focal))
        if json_path is not None:
            hand, camera = _read_json(json_path, h, w, self.config.refine.focal)
        mask = None
        if hand is not None:
            hands = [hand]
            mask_path = path.with_name(path.stem + "_mask.png")
            if mask_path.is_file():
                mask = _read_image(mask_path, "L").astype(np.float32) / 255.0
                if mask.shape != (h, w):
                    raise ValueError(f"{mask_path}: mask is {mask.shape}, the image is {(h, w)}")
        else:
            hands = self.detect(image)
        fits = [None] * len(hands)
        for side in SIDES:
            ids = [i for i, hd in enumerate(hands) if hd.side == side]
            if ids:
                for i, res in zip(ids, self.fit(image, [hands[i] for i in ids], camera, mask)):
                    fits[i] = res
        return _write(stem, path.name, image, camera, hands, fits, self.model)

    def fit(self, image, hands: list[HandInput], camera, mask) -> list[refine.RefineResult]:
        """One RefineResult (batch 1) per hand, all of one side."""
        model = self.model(hands[0].side)
        kp = np.stack([hd.keypoints for hd in hands])
        vis = np.stack([hd.visibility for hd in hands])
        world = None if hands[0].world is None else np.stack([hd.world for hd in hands])
        cfg = self.cfg
        if hands[0].source == "detector":  # no mask: the silhouette of the start adds nothing
            cfg = dataclasses.replace(cfg, silhouette_weight=0.0)
        mask = None if mask is None else jnp.asarray(mask[None])
        if self.start is None:
            res = _batch_first(
                refine.fit(kp, vis, camera, model, mask=mask, world=world, config=cfg)
            )
            return [jax.tree.map(lambda x, i=i: x[i : i + 1], res) for i in range(len(hands))]
        out = []
        for i, hd in enumerate(hands):
            one = None if world is None else jnp.asarray(world[i : i + 1])
            ev = refine.Evidence(jnp.asarray(kp[i : i + 1]), jnp.asarray(vis[i : i + 1]), mask, one)
            p0 = self.start(image, hd.keypoints, camera)
            out.append(_batch_first(refine.refine(p0, ev, model, camera, cfg)))
        return out


def _batch_first(res: refine.RefineResult) -> refine.RefineResult:
    """``losses`` and ``terms`` with the batch first ([B, steps]), like every other field."""
    return res._replace(losses=res.losses.T, terms={n: v.T for n, v in res.terms.items()})


def _warnings(hand: HandInput, joints2d, joints3d, width: int, height: int) -> list[str]:
    """Why a fit cannot be trusted (empty when nothing is wrong)."""
    out = []
    vis = hand.visibility > 0
    if not vis.any():
        return ["no visible joints: this is the mean hand at the default place, not a fit"]
    size = max(width, height)
    outside = np.maximum(np.maximum(-hand.keypoints, hand.keypoints - (width, height)), 0)
    if np.any(outside[vis].max(-1) > MAX_OUTSIDE * size):
        out.append("keypoints lie far outside the image")
    if np.min(joints3d[:, 2]) < MIN_DEPTH:
        out.append(f"the fitted hand is behind the camera or within {MIN_DEPTH} m of it")
    err = _error2d(hand, joints2d)
    if not np.isfinite(err) or err > MAX_ERROR * size:
        out.append(
            f"mean 2D error {err:.1f} px is over {MAX_ERROR:.0%} of the image's longer "
            "side: the fit does not match the keypoints"
        )
    return out


def _error2d(hand: HandInput, joints2d: np.ndarray) -> float:
    vis = hand.visibility > 0
    err = np.linalg.norm(joints2d - hand.keypoints, axis=-1)
    return float(np.mean(err[vis])) if vis.any() else float("nan")


def _write(stem: Path, name: str, image, camera, hands, fits, model_of) -> list[Path]:
    h, w = image.shape[:2]
    written, records, drawn = [], [], []
    for i, (hand, res) in enumerate(zip(hands, fits, strict=True)):
        model = model_of(hand.side)
        verts = np.asarray(res.vertices[0])
        joints3d, joints2d = np.asarray(res.joints3d[0]), np.asarray(res.joints2d[0])
        mesh_path = stem.with_name(f"{stem.name}_hand{i}.obj")
        viz.export_mesh(mesh_path, verts, model.faces)
        written.append(mesh_path)
        faces = np.asarray(model.faces)
        drawn.append(viz.OverlayHand(verts, faces, joints2d, hand.keypoints, hand.visibility))
        warnings = _warnings(hand, joints2d, joints3d, w, h)
        err = _error2d(hand, joints2d)
        print(
            f"{name} hand {i} ({hand.side}, {hand.source}): 2D error "
            f"{err:.2f} px over {int((hand.visibility > 0).sum())} joints, final loss "
            f"{float(res.losses[0, -1]) if res.losses.size else float('nan'):.3g} "
            f"({model.name})" + "".join(f"\n  WARNING: {m}" for m in warnings)
        )
        records.append(
            {
                "side": hand.side,
                "source": hand.source,
                "detection": hand.detection,
                "keypoints": hand.keypoints.tolist(),
                "visibility": hand.visibility.tolist(),
                "world_landmarks": None if hand.world is None else np.asarray(hand.world).tolist(),
                "hand_model": model.name,
                "params": jax.tree.map(lambda x: np.asarray(x[0]).tolist(), res.params)._asdict(),
                "joints3d": joints3d.tolist(),
                "joints2d": joints2d.tolist(),
                "error2d_px": None if not np.isfinite(err) else err,
                "final_loss": float(res.losses[0, -1]) if res.losses.size else None,
                "mesh": mesh_path.name,
                "warnings": warnings,
            }
        )
    if not hands:
        print(f"{name}: no hands found")
    overlay_path = stem.with_name(stem.name + "_overlay.png")
    viz.hands_overlay(image, camera, drawn).save(overlay_path)
    glb_path = stem.with_name(stem.name + ".glb")
    if drawn:
        flip = np.array([1.0, -1.0, -1.0])  # OpenCV camera axes -> glTF (y up, looking at -z)
        viz.export_scene(glb_path, [(hd.vertices * flip, hd.faces) for hd in drawn])  # a rotation
        written.append(glb_path)
    record = {
        "image": name,
        "camera": {k: float(getattr(camera, k)) for k in ("fx", "fy", "cx", "cy")},
        "hands": records,
        "glb": glb_path.name if drawn else None,
        "overlay": overlay_path.name,
    }
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(json.dumps(record, indent=1))
    return written + [json_path, overlay_path]
