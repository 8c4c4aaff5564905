"""handfit's hand detector against MediaPipe itself, on the same images.

    python benchmarks/mediapipe_compare.py --mediapipe_python=/tmp/mpvenv/bin/python [--images=DIR]

MediaPipe cannot be installed beside handfit (it pins numpy<2 and protobuf<5), so it runs
in its own environment:

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21 "numpy<2"

This script calls that Python on itself (``--side=mediapipe``) to run
``mp.solutions.hands.Hands`` with the same model (model_complexity=1, the *_full models)
and thresholds, then runs ``handfit.detect.Detector`` here and prints, per image, the
palm boxes' and the landmarks' largest differences in pixels, the world landmarks' in mm
and the handedness. Two settings are compared:

- MediaPipe's static_image_mode (palm detection, one landmark pass) against handfit with
  ``second_pass=False``;
- MediaPipe's video mode fed the same image twice (the second frame's landmarks come from
  the crop the first frame's landmarks give) against handfit with ``second_pass=True``.

Without ``--images`` it renders handfit's synthetic hands (open hand model, 320 x 320,
procedural backgrounds) into a temporary folder and uses those.

``--sensitivity`` also prints, per hand MediaPipe tracked, how far handfit's second crop is
from MediaPipe's (centre and side in pixels, rotation in radians), what that does to the
landmarks, and how much the landmark model's output moves when MediaPipe's own crop is
disturbed at random by 0.3 px (centre, size) and 0.002 rad: the chained difference is that
sensitivity at work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run_mediapipe(folder: Path, max_hands: int) -> dict:
    """(runs inside the mediapipe environment) {image: {mode: [hand]}} in pixels of the image,
    handfit's convention (MediaPipe's normalised x times the width, + 0.5)."""
    import mediapipe as mp
    import numpy as np
    from mediapipe.python.solution_base import SolutionBase
    from mediapipe.python.solutions import hands as mp_hands
    from PIL import Image

    def graph(static: bool) -> SolutionBase:
        return SolutionBase(
            binary_graph_path=mp_hands._BINARYPB_FILE_PATH,
            side_inputs={
                "model_complexity": 1,
                "num_hands": max_hands,
                "use_prev_landmarks": not static,
            },
            calculator_params={
                "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": 0.5,
                "handlandmarkcpu__ThresholdingCalculator.threshold": 0.5,
            },
            outputs=[
                "multi_hand_landmarks",
                "multi_hand_world_landmarks",
                "multi_handedness",
                "palm_detections",
                "hand_rects_from_landmarks",
            ],
        )

    del mp
    out = {}
    for path in _images(folder):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        record = {}
        for mode in ("static", "video"):
            rects = []
            with graph(mode == "static") as g:
                res = g.process({"image": image})
                if mode == "video":  # the second frame tracks from the first's landmarks
                    rects = [
                        [r.x_center, r.y_center, r.width, r.height, r.rotation]
                        for r in res.hand_rects_from_landmarks or []
                    ]
                    res = g.process({"image": image})
            hands = []
            for i, lms in enumerate(res.multi_hand_landmarks or []):
                cls = res.multi_handedness[i].classification[0]
                world = res.multi_hand_world_landmarks[i].landmark
                hands.append(
                    {
                        "landmarks": [[p.x * w + 0.5, p.y * h + 0.5] for p in lms.landmark],
                        "world": [[p.x, p.y, p.z] for p in world],
                        "label": cls.label,
                        "score": cls.score,
                    }
                )
            boxes = []
            for d in res.palm_detections or []:
                b = d.location_data.relative_bounding_box
                x0, y0 = b.xmin * w + 0.5, b.ymin * h + 0.5
                boxes.append([x0, y0, x0 + b.width * w, y0 + b.height * h])
            record[mode] = {"hands": hands, "palm_boxes": boxes, "rects": rects}
        out[path.name] = record
    return out


def compare(folder: Path, mediapipe: dict, max_hands: int) -> list[dict]:
    import numpy as np
    from PIL import Image

    from handfit import detect
    from handfit.detect import graph

    detectors = {
        "static": detect.Detector({"second_pass": False, "max_hands": max_hands}),
        "video": detect.Detector({"second_pass": True, "max_hands": max_hands}),
    }
    rows = []
    for path in _images(folder):
        image = np.asarray(Image.open(path).convert("RGB"))
        for mode, det in detectors.items():
            theirs = mediapipe[path.name][mode]
            boxes = det.palms(image)[0]
            ours = det(image)
            row = {
                "image": path.name,
                "mode": mode,
                "mediapipe": len(theirs["hands"]),
                "handfit": len(ours),
                "box_px": None,
                "landmark_px": None,
                "world_mm": None,
                "same_side": None,
                "their_crop_px": None,
            }
            if mode == "static" and len(theirs["palm_boxes"]) == len(boxes) and len(boxes):
                h, w = image.shape[:2]
                ours_px = boxes * (w, h, w, h) + 0.5
                diff = np.sort(ours_px, 0) - np.sort(theirs["palm_boxes"], 0)
                row["box_px"] = float(np.max(np.abs(diff)))
            if len(ours) == len(theirs["hands"]) and ours:
                lm, world, same = [], [], []
                for hand in ours:  # match by wrist position
                    their = min(
                        theirs["hands"],
                        key=lambda t: np.linalg.norm(
                            np.asarray(t["landmarks"][0]) - hand.landmarks[0]
                        ),
                    )
                    lm.append(np.max(np.abs(hand.landmarks - np.asarray(their["landmarks"]))))
                    world.append(1000 * np.max(np.abs(hand.world - np.asarray(their["world"]))))
                    # MediaPipe labels as in a mirrored image: its 'Left' is handfit's 'right'
                    same.append({"Left": "right", "Right": "left"}[their["label"]] == hand.side)
                row.update(
                    landmark_px=float(max(lm)), world_mm=float(max(world)), same_side=all(same)
                )
            if mode == "video" and theirs["hands"] and len(theirs["rects"]) == len(theirs["hands"]):
                # the second pass alone: handfit's landmark pass on MediaPipe's own crop
                h, w = image.shape[:2]
                diffs = []
                for rect, their in zip(theirs["rects"], theirs["hands"], strict=True):
                    lm = det.landmarks(image, np.asarray(rect, np.float32))[0][:, :2]
                    px = graph.to_handfit_pixels(lm, w, h)
                    diffs.append(np.max(np.abs(px - np.asarray(their["landmarks"]))))
                row["their_crop_px"] = float(max(diffs))
            rows.append(row)
    return rows


def sensitivity(folder: Path, mediapipe: dict, max_hands: int, trials: int = 20) -> None:
    """Prints the second crop's difference from MediaPipe's and the landmark model's
    response to small random changes of MediaPipe's crop (module doc)."""
    import numpy as np
    from PIL import Image

    from handfit import detect
    from handfit.detect import graph

    det = detect.Detector({"second_pass": False, "max_hands": max_hands})
    rng = np.random.default_rng(0)
    print(
        "\n| image | our second crop - MediaPipe's: centre px, side px, rotation rad "
        "| landmarks on ours vs theirs max px | theirs disturbed: landmarks move max px "
        "(median, largest of the trials) |"
    )
    print("|---|---|---:|---:|")
    for path in _images(folder):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        theirs = mediapipe[path.name]["video"]
        ours = det(image)
        if len(theirs["rects"]) != 1 or len(ours) != 1:
            continue  # one hand each: no matching needed
        rect = np.asarray(theirs["rects"][0], np.float64)
        mine = graph.landmarks_to_rect((ours[0].landmarks - 0.5) / (w, h), w, h)

        def lms(r, image=image, w=w, h=h):
            return graph.to_handfit_pixels(
                det.landmarks(image, r.astype(np.float32))[0][:, :2], w, h
            )

        base = lms(rect)
        scale = np.array([0.3 / w, 0.3 / h, 0.3 / w, 0.3 / h, 0.002])
        moved = [np.abs(lms(rect + rng.normal(size=5) * scale) - base).max() for _ in range(trials)]
        d = (mine - rect) * (w, h, w, h, 1)
        print(
            f"| {path.name} | {np.hypot(*d[:2]):.2f}, {d[2]:+.2f}, {d[4]:+.4f} | "
            f"{np.abs(lms(mine) - base).max():.2f} | {np.median(moved):.2f}, "
            f"{max(moved):.2f} |"
        )


def _synthetic(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    from handfit.data import synthetic

    spec = synthetic.SyntheticSpec(
        image_size=320, fill=0.4, focal=1.5, occluder_prob=0.0, rotation_deg=(40.0, 40.0, 180.0)
    )
    for i, r in enumerate(synthetic.generate(spec, "test", 0, count)):
        Image.fromarray(np.asarray(r["image"])).save(folder / f"synthetic_{i:03d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mediapipe_python", default="/tmp/mpvenv/bin/python")
    parser.add_argument("--images", default="")
    parser.add_argument("--count", type=int, default=24, help="synthetic images without --images")
    parser.add_argument("--max_hands", type=int, default=2)
    parser.add_argument("--side", default="handfit", choices=("handfit", "mediapipe"))
    parser.add_argument("--sensitivity", action="store_true", help="also the crop sensitivity")
    args = parser.parse_args()
    if args.side == "mediapipe":
        print(json.dumps(run_mediapipe(Path(args.images), args.max_hands)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.images) if args.images else Path(tmp)
        if not args.images:
            _synthetic(folder, args.count)
        done = subprocess.run(
            [
                args.mediapipe_python,
                __file__,
                "--side=mediapipe",
                f"--images={folder}",
                f"--max_hands={args.max_hands}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.exit(f"MediaPipe's side failed:\n{done.stderr[-3000:]}")
        mediapipe = json.loads(done.stdout.strip().splitlines()[-1])
        rows = compare(folder, mediapipe, args.max_hands)
        _print(rows)
        if args.sensitivity:
            sensitivity(folder, mediapipe, args.max_hands)


def _print(rows: list[dict]) -> None:
    print(
        "| image | mode | hands MediaPipe / handfit | palm box max px | landmarks max px "
        "| world max mm | same side | on MediaPipe's crop max px |"
    )
    print("|---|---|---|---:|---:|---:|---|---:|")
    for r in rows:

        def f(v, fmt="{:.2f}"):
            return "-" if v is None else fmt.format(v)

        print(
            f"| {r['image']} | {r['mode']} | {r['mediapipe']} / {r['handfit']} | "
            f"{f(r['box_px'])} | {f(r['landmark_px'])} | {f(r['world_mm'])} | "
            f"{f(r['same_side'], '{}')} | {f(r['their_crop_px'])} |"
        )
    for mode in ("static", "video"):
        sel = [r for r in rows if r["mode"] == mode]
        lm = [r["landmark_px"] for r in sel if r["landmark_px"] is not None]
        agree = sum(r["mediapipe"] == r["handfit"] for r in sel)
        print(
            f"{mode}: hand counts agree on {agree}/{len(sel)} images; landmarks compared on "
            f"{len(lm)}: max {max(lm, default=float('nan')):.2f} px, median "
            f"{sorted(lm)[len(lm) // 2] if lm else float('nan'):.2f} px"
        )
    alone = [r["their_crop_px"] for r in rows if r["their_crop_px"] is not None]
    print(
        f"second pass on MediaPipe's own crops ({len(alone)} images): max "
        f"{max(alone, default=float('nan')):.2f} px"
    )


if __name__ == "__main__":
    main()
