"""Ordinary photographs in, hands out: hands found of those visible, fit error, time.

    python benchmarks/photos_bench.py --photos=DIR --extract   # once: fetch the photos
    python benchmarks/photos_bench.py --photos=DIR [--tiles=0,2] [--repeats=5]

Needs ``pip install -e .[detect]`` and ``python main.py --mode=models``.

The photos are not in the repository: ``--extract`` takes them out of two packages with
their ordinary clients (nothing else is downloaded) and writes ``SOURCES.md`` beside them:
ten from Debian's ``opencv-doc`` (OpenCV's tutorial and sample images; ``apt-get
download``, then ``dpkg -x``; Apache-2.0 and BSD-3-Clause per the package's
``debian/copyright``) and two from the ``ultralytics`` wheel on PyPI (``pip download
--no-deps``; the package is AGPL-3.0). ``zidane.jpg`` and ``messi5.jpg`` are press
photographs: use them to test, do not redistribute them.

For each photo, ``VISIBLE`` lists the hands a person can see in it (centre and radius in
pixels, marked by eye). A visible hand is *found* when a detected hand's landmarks have
their mean within that radius; other detections are counted as *extra*. Per setting of
``config.detect.tiles``: hands found and extra, the detector's median time, and, fitting
every detected hand as ``--mode=refine`` does (``refine.fit`` with the world landmarks, no
silhouette, the right or left hand model), the fit's time and mean 2D error to the
landmarks. There is no ground truth for the landmarks themselves: look at the overlays
(``python main.py --mode=refine --config.refine.input=DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from configs import default
from handfit import detect, mano, refine, render

OPENCV_DOC = "/usr/share/doc/opencv-doc"
ULTRALYTICS = "ultralytics==8.4.190"
# name: (package, path inside it)
SOURCES = {
    "handSrc.jpg": ("opencv-doc", f"{OPENCV_DOC}/opencv4/html/handSrc.jpg"),
    "handDst.jpg": ("opencv-doc", f"{OPENCV_DOC}/opencv4/html/handDst.jpg"),
    "fileListImage.jpg": ("opencv-doc", f"{OPENCV_DOC}/opencv4/html/fileListImage.jpg"),
    "Threshold_inRange_Tutorial_Result_input.jpeg": (
        "opencv-doc",
        f"{OPENCV_DOC}/opencv4/html/Threshold_inRange_Tutorial_Result_input.jpeg",
    ),
    "screen_charuco.jpg": ("opencv-doc", f"{OPENCV_DOC}/opencv4/html/screen_charuco.jpg"),
    "messi5.jpg": ("opencv-doc", f"{OPENCV_DOC}/examples/data/messi5.jpg"),
    "basketball1.png": ("opencv-doc", f"{OPENCV_DOC}/examples/data/basketball1.png"),
    "left01.jpg": ("opencv-doc", f"{OPENCV_DOC}/examples/data/left01.jpg"),
    "right04.jpg": ("opencv-doc", f"{OPENCV_DOC}/examples/data/right04.jpg"),
    "right02.jpg": ("opencv-doc", f"{OPENCV_DOC}/examples/data/right02.jpg"),
    "zidane.jpg": (ULTRALYTICS, "ultralytics/assets/zidane.jpg"),
    "bus.jpg": (ULTRALYTICS, "ultralytics/assets/bus.jpg"),
}
# name: visible hands (x, y, radius), handfit's pixels, marked by eye
VISIBLE = {
    "handSrc.jpg": [(320, 250, 150)],  # an open hand, palm up, filling the photo
    "handDst.jpg": [(366, 252, 150)],
    "fileListImage.jpg": [(377, 102, 30)],  # a hand on a mouse, from above
    "Threshold_inRange_Tutorial_Result_input.jpeg": [(487, 224, 90)],  # holding a clock
    "screen_charuco.jpg": [(135, 148, 50)],  # holding a board, in a screenshot
    "messi5.jpg": [(365, 164, 25), (84, 95, 25)],  # a footballer's two hands
    "basketball1.png": [(142, 155, 25), (465, 225, 30)],  # motion-blurred, grey
    "left01.jpg": [(575, 190, 50)],  # fingers around a board's edge, grey
    "right04.jpg": [(441, 266, 60)],
    "right02.jpg": [(215, 30, 50)],  # fingers over a board, cut by the frame
    "zidane.jpg": [(1059, 447, 80)],  # a pointing hand, small in a 1280 x 720 photo
    "bus.jpg": [(253, 523, 40), (271, 671, 40), (60, 775, 40), (725, 552, 30)],  # street
}


def extract(folder: Path) -> None:
    """Fetches the two packages into a temporary folder and copies the photos to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)  # apt-get download runs as _apt where it can
        subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True)
        (deb,) = tmp.glob("opencv-doc_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "deb")], check=True)
        subprocess.run(["pip", "download", "--no-deps", "-d", str(tmp), ULTRALYTICS], check=True)
        (wheel,) = tmp.glob("ultralytics-*.whl")
        lines = [
            "# Where these photos come from",
            "",
            f"Debian package `{deb.name}` (`apt-get download opencv-doc`): Apache-2.0 "
            "AND BSD-3-Clause (its `debian/copyright`, `Files: *`).",
            f"PyPI wheel `{wheel.name}` (`pip download --no-deps {ULTRALYTICS}`): "
            "AGPL-3.0 package.",
            "zidane.jpg and messi5.jpg are press photographs: test with them, do not "
            "redistribute them.",
            "",
        ]
        with zipfile.ZipFile(wheel) as zf:
            for name, (package, path) in SOURCES.items():
                if package == "opencv-doc":
                    shutil.copyfile(tmp / "deb" / path.lstrip("/"), folder / name)
                else:
                    (folder / name).write_bytes(zf.read(path))
                lines.append(f"- `{name}`: {package}, `{path}`")
    (folder / "SOURCES.md").write_text("\n".join(lines) + "\n")
    print(f"{len(SOURCES)} photos in {folder}")


def _match(hands, visible) -> tuple[int, int]:
    """(visible hands found, detections that match no visible hand)."""
    centres = [h.landmarks.mean(0) for h in hands]
    found = sum(any(np.hypot(*(c - (x, y))) <= r for c in centres) for x, y, r in visible)
    extra = sum(not any(np.hypot(*(c - (x, y))) <= r for x, y, r in visible) for c in centres)
    return found, extra


def _fit(hands, image_shape, models, cfg) -> list[float]:
    """Fits every hand as the CLI does; the mean 2D error (px) of each fit."""
    h, w = image_shape[:2]
    f = default.get_config().refine.focal * max(h, w)
    camera = render.perspective_camera(f, f, w / 2, h / 2, h, w)
    errors = []
    for side in ("right", "left"):
        sel = [hd for hd in hands if hd.side == side]
        if sel:
            kp = np.stack([hd.landmarks for hd in sel])
            res = refine.fit(
                kp,
                np.ones(kp.shape[:2]),
                camera,
                models[side],
                world=np.stack([hd.world for hd in sel]),
                config=cfg,
            )
            errors += list(np.linalg.norm(np.asarray(res.joints2d) - kp, axis=-1).mean(-1))
    return errors


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def bench(folder: Path, tiles: list[int], repeats: int) -> None:
    config = default.get_config()
    cfg = dataclasses.replace(refine.RefineConfig.from_config(config.refine), silhouette_weight=0.0)
    models = {"right": mano.open_hand(), "left": mano.open_hand("left")}
    missing = [n for n in VISIBLE if not (folder / n).is_file()]
    if missing:
        raise SystemExit(f"{folder}: missing {missing}; run with --extract first")
    print(f"load average {os.getloadavg()[0]:.1f} (2-core machine)")
    print(
        "| photo | size | visible | "
        + " | ".join(f"tiles={t}: found / extra, detect ms, fit ms, fit 2D px" for t in tiles)
        + " |"
    )
    print("|---|---|---:|" + "---:|" * len(tiles))
    detectors = {
        t: detect.Detector(
            dataclasses.replace(detect.DetectConfig.from_config(config.detect), tiles=t)
        )
        for t in tiles
    }
    totals = {t: np.zeros(4) for t in tiles}  # found, extra, detect ms, fit ms
    for name, visible in VISIBLE.items():
        image = np.asarray(Image.open(folder / name).convert("RGB"))
        cells = []
        for t, detector in detectors.items():
            hands = detector(image)
            found, extra = _match(hands, visible)
            det_ms = _median_ms(lambda d=detector, im=image: d(im), repeats)
            errors = _fit(hands, image.shape, models, cfg) if hands else []  # compiles
            fit_ms = (
                _median_ms(
                    lambda h=hands, s=image.shape: _fit(h, s, models, cfg), max(1, repeats // 2)
                )
                if hands
                else 0.0
            )
            totals[t] += (found, extra, det_ms, fit_ms)
            err = f"{np.mean(errors):.1f}" if errors else "-"
            cells.append(f"{found} / {extra}, {det_ms:.0f}, {fit_ms:.0f}, {err}")
        print(
            f"| {name} | {image.shape[1]} x {image.shape[0]} | {len(visible)} | "
            + " | ".join(cells)
            + " |"
        )
    n_visible = sum(len(v) for v in VISIBLE.values())
    for t, (found, extra, det_ms, fit_ms) in totals.items():
        print(
            f"tiles={t}: found {found:.0f} of {n_visible} visible hands, {extra:.0f} extra "
            f"detections; detection {det_ms / len(VISIBLE):.0f} ms per photo (mean of "
            f"medians), fitting {fit_ms / len(VISIBLE):.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", required=True, help="folder of the photos")
    parser.add_argument("--extract", action="store_true", help="fetch the photos into it")
    parser.add_argument("--tiles", default="0,2", help="settings of config.detect.tiles")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.extract:
        extract(Path(args.photos))
        return
    bench(Path(args.photos), [int(t) for t in args.tiles.split(",")], args.repeats)


if __name__ == "__main__":
    main()
