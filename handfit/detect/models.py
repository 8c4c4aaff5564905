"""MediaPipe's two hand models: fetched once by ``--mode=models``, checked, found later.

``palm_detection_full.tflite`` and ``hand_landmark_full.tflite`` (Apache-2.0) ship inside the
``mediapipe==0.10.21`` wheel on PyPI (later versions no longer carry them). ``fetch`` asks
pip for that wheel (``pip download --no-deps``; it is not installed), extracts the two
files and the wheel's licence into the cache folder, checks their sha256 and writes
``models.json`` (source, licence, checksums) beside them. Nothing is downloaded at import
or when hands are detected: ``paths`` raises with the command when a file is missing.

The cache folder: ``config.detect.model_dir``, else ``$HANDFIT_MODELS``, else
``~/.cache/handfit/models``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import ml_collections

WHEEL_VERSION = "0.10.21"
# The wheel is fetched for one fixed platform: the .tflite files are the same in all of them.
WHEEL_PLATFORM = ("cp311", "manylinux_2_28_x86_64")
WHEEL = f"mediapipe-{WHEEL_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
# name -> (path inside the wheel, sha256)
FILES = {
    "palm_detection_full.tflite": (
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    ),
    "hand_landmark_full.tflite": (
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
    ),
}
LICENSE_IN_WHEEL = f"mediapipe-{WHEEL_VERSION}.dist-info/LICENSE"
ENV_VAR = "HANDFIT_MODELS"
COMMAND = "python main.py --mode=models"


def model_dir(configured: str = "") -> Path:
    """The cache folder: ``configured``, else ``$HANDFIT_MODELS``, else ~/.cache/handfit/models."""
    return Path(configured or os.environ.get(ENV_VAR) or Path.home() / ".cache/handfit/models")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def paths(configured: str = "") -> dict[str, Path]:
    """{name: path} of the two models in the cache folder; raises FileNotFoundError naming
    the folder and the command that fetches them when one is missing or altered."""
    folder = model_dir(configured)
    out = {}
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"hand detector model {path} is missing: fetch MediaPipe's hand models "
                f"(Apache-2.0, from the mediapipe=={WHEEL_VERSION} wheel on PyPI) with\n"
                f"    {COMMAND}"
                + (f" --config.detect.model_dir={folder}" if configured else "")
                + f"\n(folder: --config.detect.model_dir or ${ENV_VAR}, default "
                "~/.cache/handfit/models)"
            )
        out[name] = path
    return out


def _download_wheel(dest: Path) -> Path:
    python, platform = WHEEL_PLATFORM
    cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={WHEEL_VERSION}", "--no-deps"]
    cmd += ["--only-binary=:all:", "--platform", platform, "--python-version", "3.11"]
    cmd += ["--implementation", "cp", "--abi", python, "-d", str(dest)]
    print("fetching", WHEEL, "with pip (not installed) ...", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL
    if done.returncode != 0 or not wheel.is_file():
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wheel


def extract(wheel: Path, folder: Path) -> dict[str, Path]:
    """Extracts the two models and the licence from the wheel into ``folder``, checks the
    sha256 of each model and writes ``models.json``; a mismatch removes the file and raises."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name, (inner, digest) in FILES.items():
            path = folder / name
            path.write_bytes(z.read(inner))
            if sha256(path) != digest:
                path.unlink()
                raise ValueError(f"{wheel}!{inner}: sha256 is not {digest}; not using it")
            out[name] = path
        (folder / "LICENSE").write_bytes(z.read(LICENSE_IN_WHEEL))
    record = {
        "source": f"PyPI: mediapipe=={WHEEL_VERSION}, wheel {wheel.name}",
        "wheel_sha256": sha256(wheel),
        "licence": "Apache-2.0 (LICENSE beside this file, from the wheel's dist-info)",
        "files": {
            name: {"path_in_wheel": inner, "sha256": digest}
            for name, (inner, digest) in FILES.items()
        },
    }
    (folder / "models.json").write_text(json.dumps(record, indent=1) + "\n")
    return out


def fetch(config: ml_collections.ConfigDict | None = None, workdir: str = "") -> dict[str, Path]:
    """``--mode=models``: puts the two models in the cache folder (a no-op when they are
    there and their sha256 match). ``workdir`` is not used."""
    del workdir
    folder = model_dir(config.detect.model_dir if config is not None else "")
    try:
        found = paths(str(folder))
        if all(sha256(found[n]) == d for n, (_, d) in FILES.items()):
            print(f"hand detector models already in {folder}")
            return found
    except FileNotFoundError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        out = extract(_download_wheel(Path(tmp)), folder)
    print(f"hand detector models in {folder} (Apache-2.0; models.json records the source)")
    return out
