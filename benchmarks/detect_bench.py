"""Photos in, hands out: the detector's and the fit's time per stage, and their quality.

    python benchmarks/detect_bench.py [--count=24] [--repeats=5] [--sweep | --speed_only]

Needs ``pip install -e .[detect]`` and ``python main.py --mode=models``.

Speed: a 1280 x 800 image (about 1 MP) holding two rendered hands (a right one and a
mirrored, left one) on a scaled-up synthetic background; times after compilation, median of
``--repeats``: palm detection (crop, model, decoding, NMS), the landmark passes, the whole
detector, and fitting both hands (``refine.fit``, the CLI's settings: no silhouette) with
and without the world-landmark terms; the baseline in the same run is the fit without them.

Quality: handfit's synthetic test hands (open hand model, 320 x 320, known 2D and 3D
joints): how many the detector finds, the 2D error of its landmarks, and for the fits the
mean 2D error, PA-MPJPE (mm, FreiHAND's Procrustes protocol) and the error of the hand's
depth (middle MCP, mm), each with and without the world-landmark terms.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np
from PIL import Image

from configs import default
from handfit import detect, mano, metrics, refine, render
from handfit.data import synthetic

SPEC = synthetic.SyntheticSpec(
    image_size=320, fill=0.4, focal=1.5, occluder_prob=0.0, rotation_deg=(40.0, 40.0, 180.0)
)


def _ms(fn, repeats: int) -> tuple[float, float]:
    """(median, best) milliseconds of ``fn`` after a warm-up call (the best is the least
    disturbed by other processes on a shared machine)."""
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)), 1000 * float(np.min(times))


def _camera(h: int, w: int):
    f = default.get_config().refine.focal * max(h, w)
    return render.perspective_camera(f, f, w / 2, h / 2, h, w)


def _fit_all(hands, camera, models, cfg, world: bool):
    out = []
    for side in ("right", "left"):
        sel = [h for h in hands if h.side == side]
        if sel:
            kp = np.stack([h.landmarks for h in sel])
            w3d = np.stack([h.world for h in sel]) if world else None
            out.append(
                refine.fit(
                    kp, np.ones(kp.shape[:2]), camera, models[side], world=w3d, config=cfg
                ).joints3d
            )
    return out


def speed(records, detector, models, cfg, repeats: int) -> None:
    background = Image.fromarray(records[0]["image"]).resize((1280, 800), Image.BILINEAR)
    canvas = np.asarray(background).copy()
    for i, (index, x) in enumerate(((11, 0), (5, 640))):  # a right hand and a mirrored one
        tile = Image.fromarray(records[index]["image"]).resize((640, 640), Image.BILINEAR)
        canvas[80:720, x : x + 640] = np.asarray(tile)[:, :: 1 - 2 * i]
    hands = detector(canvas)
    camera = _camera(*canvas.shape[:2])
    world_cfg = cfg
    plain_cfg = dataclasses.replace(cfg, world_joints_weight=0.0, world_bones_weight=0.0)
    rows = [
        ("palm detection (crop, model, decode, NMS)", _ms(lambda: detector.palms(canvas), repeats)),
        (
            "one landmark pass (crop, model, projection)",
            _ms(lambda: detector.landmarks(canvas, np.array([0.25, 0.5, 0.3, 0.48, 0.0])), repeats),
        ),
        (
            "whole detector (palms + 2 landmark passes per hand)",
            _ms(lambda: detector(canvas), repeats),
        ),
        (
            "fit, 2D landmarks only (baseline)",
            _ms(lambda: _fit_all(hands, camera, models, plain_cfg, False), repeats),
        ),
        (
            "fit, 2D + world landmarks",
            _ms(lambda: _fit_all(hands, camera, models, world_cfg, True), repeats),
        ),
    ]
    total = tuple(a + b for a, b in zip(rows[2][1], rows[4][1], strict=True))
    print(
        f"1280 x 800 image, {len(hands)} hands found ({[h.side for h in hands]}), "
        f"fit: {cfg.steps} steps x {cfg.fit_starts} starts per hand"
    )
    base = rows[3][1][0]
    print("| stage | median ms | best ms | median / fit without world |")
    print("|---|---:|---:|---:|")
    for name, (median, best) in rows + [("detection + fitting (with world)", total)]:
        print(f"| {name} | {median:.1f} | {best:.1f} | {median / base:.2f} |")


def quality(records, detector, models, cfg) -> None:
    plain_cfg = dataclasses.replace(cfg, world_joints_weight=0.0, world_bones_weight=0.0)
    found, det_err, results = 0, [], {"2D only": [], "2D + world": []}
    for r in records:
        hands = detector(r["image"])
        if len(hands) != 1:
            continue
        found += 1
        hand = hands[0]
        det_err.append(np.mean(np.linalg.norm(hand.landmarks - r["joints2d"], axis=-1)))
        k = r["K"]
        camera = render.perspective_camera(k[0, 0], k[1, 1], k[0, 2], k[1, 2], 320, 320)
        model = models["right"]  # the renders are right hands whatever the detector says
        for name, c, world in (("2D only", plain_cfg, None), ("2D + world", cfg, hand.world)):
            res = refine.fit(
                hand.landmarks[None],
                np.ones((1, 21)),
                camera,
                model,
                world=None if world is None else world[None],
                config=c,
            )
            pred, true = np.asarray(res.joints3d[0]), r["joints3d"]
            pa = np.mean(np.linalg.norm(metrics.procrustes_align(pred, true) - true, axis=-1))
            results[name].append(
                (
                    np.mean(np.linalg.norm(np.asarray(res.joints2d[0]) - hand.landmarks, axis=-1)),
                    1000 * pa,
                    1000 * abs(pred[9, 2] - true[9, 2]),
                )
            )
    print(
        f"\nsynthetic test hands: the detector found {found} of {len(records)}; its landmarks' "
        f"mean 2D error {np.mean(det_err):.1f} px (median {np.median(det_err):.1f})"
    )
    print("| fit | 2D error to landmarks px | PA-MPJPE mm | depth error mm (median) |")
    print("|---|---:|---:|---:|")
    for name, rows in results.items():
        a = np.asarray(rows)
        print(
            f"| {name} | {a[:, 0].mean():.1f} | {a[:, 1].mean():.1f} | {a[:, 2].mean():.0f} "
            f"({np.median(a[:, 2]):.0f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="quality for several world weights")
    parser.add_argument("--speed_only", action="store_true")
    args = parser.parse_args()
    config = default.get_config()
    cfg = dataclasses.replace(
        refine.RefineConfig.from_config(config.refine), silhouette_weight=0.0
    )  # the CLI's settings for detected hands
    detector = detect.Detector(config.detect)
    models = {"right": mano.open_hand(), "left": mano.open_hand("left")}
    records = synthetic.generate(SPEC, "test", 0, max(args.count, 12))
    if args.sweep:
        for joints, bones in ((0.3, 0), (1, 0), (3, 0), (10, 0), (1, 0.001), (1, 0.01), (0, 0.01)):
            print(f"\nworld_joints_weight {joints}, world_bones_weight {bones}:")
            c = dataclasses.replace(cfg, world_joints_weight=joints, world_bones_weight=bones)
            quality(records[: args.count], detector, models, c)
        return
    speed(records, detector, models, cfg, args.repeats)
    if not args.speed_only:
        quality(records[: args.count], detector, models, cfg)


if __name__ == "__main__":
    main()
