"""Writes tiny dataset fixtures in the real on-disk formats of RHD, STB, Dexter+Object, FreiHAND.

Each writer starts from known hands in handfit's canonical order (metres, the
image's camera frame) and converts them INTO the dataset's raw order, units and
frame, using joint-name tables written out here from docs/datasets.md (not
handfit.skeleton's maps), so that a wrong map or transform in a reader shows up.
Every image gets a red marker at the projection of the thumb tip, so tests can
check that images, joints and K agree.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib

import numpy as np
import scipy.io
from PIL import Image
from scipy.spatial.transform import Rotation

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
CANONICAL = ("wrist",) + tuple(f"{f}_{p}" for f in FINGERS for p in ("mcp", "pip", "dip", "tip"))
# RHD per hand: wrist, then each finger tip -> mcp (thumb, index, middle, ring, pinky).
RHD_RAW = ("wrist",) + tuple(f"{f}_{p}" for f in FINGERS for p in ("tip", "dip", "pip", "mcp"))
# STB handPara: palm centre (stored in the canonical wrist slot), then little, ring,
# middle, index, thumb, each mcp -> tip.
STB_RAW = ("wrist",) + tuple(
    f"{f}_{p}"
    for f in ("pinky", "ring", "middle", "index", "thumb")
    for p in ("mcp", "pip", "dip", "tip")
)
THUMB_TIP = CANONICAL.index("thumb_tip")
RED = np.array([255, 0, 0], np.uint8)


def raw_from_canonical(joints: np.ndarray, raw_names) -> np.ndarray:
    """Canonical ``[..., 21, D]`` -> the order named by ``raw_names``."""
    return joints[..., [CANONICAL.index(n) for n in raw_names], :]


def make_hand(rng: np.random.Generator, z: float = 0.5) -> np.ndarray:
    """A plausible right hand ``[21, 3]`` in metres, canonical order, centred about ``z`` ahead."""
    joints = np.zeros((21, 3))
    bases = {  # MCP (thumb: CMC-ish) positions relative to the wrist, fingers pointing -y
        "thumb": (0.030, -0.025),
        "index": (0.022, -0.085),
        "middle": (0.002, -0.090),
        "ring": (-0.017, -0.085),
        "pinky": (-0.033, -0.075),
    }
    lengths = {
        "thumb": (0.035, 0.03, 0.025),
        "index": (0.04, 0.025, 0.02),
        "middle": (0.045, 0.028, 0.022),
        "ring": (0.042, 0.026, 0.02),
        "pinky": (0.032, 0.02, 0.018),
    }
    for f, finger in enumerate(FINGERS):
        angle = np.deg2rad((-40.0, -8.0, 0.0, 8.0, 18.0)[f]) + rng.uniform(-0.1, 0.1)
        direction = np.array([-np.sin(angle), -np.cos(angle), rng.uniform(-0.3, 0.3)])
        point = np.array([*bases[finger], rng.uniform(-0.01, 0.01)])
        joints[1 + 4 * f] = point
        for k, length in enumerate(lengths[finger]):
            direction = direction / np.linalg.norm(direction)
            point = point + length * direction
            joints[2 + 4 * f + k] = point
            direction = direction + np.array([0, 0, -0.25]) + rng.normal(0, 0.05, 3)
    joints -= joints.mean(0)
    rotation = Rotation.from_rotvec(rng.uniform(-0.5, 0.5, 3)).as_matrix()
    offset = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), z])
    return (joints @ rotation.T + offset).astype(np.float32)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
    return uvw[..., :2] / uvw[..., 2:]


def background(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth image without pure red: (0, x gradient, y gradient + seed)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 1] = (np.arange(width)[None, :] * 200 // width).astype(np.uint8)
    image[..., 2] = ((np.arange(height)[:, None] * 150 // height) + 7 * seed) % 200
    return image


def paint_marker(image: np.ndarray, uv, radius: int = 2) -> None:
    """Paints a red square centred on the pixel that contains ``uv``."""
    c, r = int(np.floor(uv[0])), int(np.floor(uv[1]))
    h, w = image.shape[:2]
    assert 0 <= c < w and 0 <= r < h, f"marker {uv} off the {w}x{h} image"
    image[max(r - radius, 0) : r + radius + 1, max(c - radius, 0) : c + radius + 1] = RED


def marker_at(image: np.ndarray, uv) -> bool:
    """Whether the pixel containing ``uv`` is (close to) the red marker."""
    c, r = int(np.floor(uv[0])), int(np.floor(uv[1]))
    pixel = image[r, c].astype(int)
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


# ----------------------------------------------------------------------------- RHD


def write_rhd(data_dir: str, rng: np.random.Generator, split: str = "evaluation", n: int = 3):
    """RHD_published_v2/<split>/ with ``n`` samples; returns the truth per sample.

    Sample i: the left hand covers more mask pixels when i is even, the right hand
    when i is odd; the other hand always has more visible keypoints, so the mask and
    keypoint rules disagree.
    """
    root = os.path.join(data_dir, "RHD_published_v2", split)
    for sub in ("color", "mask", "depth"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    annos, truth = {}, []
    for i in range(n):
        sid = 7 * i + 3  # sparse, non-zero ids: the reader must use the pickle's keys
        K = np.array([[280.0 + 10 * i, 0, 160.0 + i], [0, 282.0 + 10 * i, 158.0], [0, 0, 1]])
        left, right = make_hand(rng, 0.6), make_hand(rng, 0.55)
        left[:, 0] = -left[:, 0]  # a left hand
        left += np.array([-0.05, 0, 0], np.float32)
        right += np.array([0.05, 0, 0], np.float32)
        xyz = np.concatenate(
            [raw_from_canonical(left, RHD_RAW), raw_from_canonical(right, RHD_RAW)]
        )
        uv = project(xyz, K)
        vis = np.ones(42)
        big_left = i % 2 == 0
        # the hand with the bigger mask has fewer visible keypoints
        hidden = rng.choice(21, 6, replace=False) + (0 if big_left else 21)
        vis[hidden] = 0
        annos[sid] = {
            "xyz": xyz.astype(np.float32),
            "uv_vis": np.concatenate([uv, vis[:, None]], 1).astype(np.float32),
            "K": K.astype(np.float32),
        }
        mask = np.zeros((320, 320), np.uint8)
        mask[:, :] = 1  # class 1: not a hand
        big, small = (slice(10, 110), slice(10, 110)), (slice(200, 240), slice(200, 240))
        left_region, right_region = (big, small) if big_left else (small, big)
        mask[left_region] = 5  # a left-hand id (2-17)
        mask[left_region[0], left_region[1].start : left_region[1].start + 5] = 17
        mask[right_region] = 20  # a right-hand id (18-33)
        mask[right_region[0], right_region[1].start : right_region[1].start + 5] = 33
        image = background(320, 320, i)
        chosen = left if big_left else right
        paint_marker(image, project(chosen[THUMB_TIP], K))
        Image.fromarray(image).save(os.path.join(root, "color", f"{sid:05d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "mask", f"{sid:05d}.png"))
        depth = np.zeros((320, 320, 3), np.uint8)
        Image.fromarray(depth).save(os.path.join(root, "depth", f"{sid:05d}.png"))
        truth.append(
            {
                "sid": sid,
                "K": K,
                "left": left,
                "right": right,
                "vis": vis.astype(bool),
                "mask_side": "left" if big_left else "right",
                "keypoint_side": "right" if big_left else "left",
                "left_region": left_region,
                "right_region": right_region,
            }
        )
    with open(os.path.join(root, f"anno_{split}.pickle"), "wb") as f:
        pickle.dump(annos, f, protocol=2)
    return truth


# ----------------------------------------------------------------------------- STB

STB_BB_K = np.array([[822.79041, 0, 318.47345], [0, 822.79041, 250.31296], [0, 0, 1]])
STB_SK_K = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
STB_BASELINE = 0.120054
STB_SK_R = Rotation.from_rotvec([0.00531, -0.01196, 0.00301]).as_matrix()
STB_SK_T = np.array([-24.0381, -0.4563, -1.2326])


def write_stb(
    data_dir: str, rng: np.random.Generator, sequences=("B1Counting", "B1Random"), n: int = 2
):
    """STB/ with ``n`` frames per sequence, BB and SK labels and images.

    Returns ``{seq: {'BB': hands [n, 21, 3], 'SK': hands}}``: canonical, metres,
    joint 0 = palm centre, in the BB left camera's / SK colour camera's frame.
    """
    root = os.path.join(data_dir, "STB")
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    truth = {}
    for s, seq in enumerate(sequences):
        folder = os.path.join(root, "images", seq)
        os.makedirs(folder, exist_ok=True)
        hands = {}
        for sensor in ("BB", "SK"):
            joints = np.stack([make_hand(rng, 0.6) for _ in range(n)])
            joints[..., 0] = -joints[..., 0]  # STB shows left hands
            # joint 0: the palm centre
            joints[:, 0] = 0.5 * (joints[:, CANONICAL.index("middle_mcp")] + joints[:, 0])
            if sensor == "BB":  # centre the hand between the two cameras' views
                joints += np.array([0.06, 0.0, 0.0], np.float32)
            hands[sensor] = joints
            mm = joints.astype(np.float64) * 1000.0
            if sensor == "SK":  # labels live in the depth camera: X_d = R X_c + T
                mm = mm @ STB_SK_R.T + STB_SK_T
            para = raw_from_canonical(mm, STB_RAW).transpose(2, 1, 0)  # (3, 21, n)
            scipy.io.savemat(
                os.path.join(root, "labels", f"{seq}_{sensor}.mat"), {"handPara": para}
            )
            for i in range(n):
                if sensor == "BB":
                    views = {
                        "BB_left": joints[i],
                        "BB_right": joints[i] - np.array([STB_BASELINE, 0, 0]),
                    }
                    K = STB_BB_K
                else:
                    views, K = {"SK_color": joints[i]}, STB_SK_K
                for name, points in views.items():
                    image = background(480, 640, 3 * s + i)
                    paint_marker(image, project(points[THUMB_TIP], K))
                    Image.fromarray(image).save(os.path.join(folder, f"{name}_{i}.png"))
                depth = np.zeros((480, 640, 3), np.uint8)
                Image.fromarray(depth).save(os.path.join(folder, f"SK_depth_{i}.png"))
        truth[seq] = hands
    return truth


# ----------------------------------------------------------------------------- Dexter+Object

DO_K = np.array([[587.45209, 0, 325], [0, 600.67456, 249], [0, 0, 1]])
DO_RT = np.array(
    [
        [0.9999, 0.0034, 0.0161, 19.0473],
        [-0.0033, 1.0, -0.0079, -1.8514],
        [-0.0162, 0.0079, 0.9998, -4.7501],
    ]
)
DO_TIPS = [CANONICAL.index(f"{f}_tip") for f in FINGERS]


def write_dexter(
    data_dir: str,
    rng: np.random.Generator,
    sequences=("Grasp1", "Pinch"),
    n: int = 3,
    missing=((0, 1, 2),),
):
    """dexter+object/ with ``n`` frames per sequence; ``missing`` lists (seq no, frame, tip).

    Returns ``{seq: tips [n, 5, 3]}`` in metres, colour camera frame, NaN where missing.
    Images are named Color_%04d.bmp but written in shuffled order, and each line
    carries 3 cuboid-corner groups after the tips.
    """
    root = os.path.join(data_dir, "dexter+object")
    os.makedirs(os.path.join(root, "calibration"), exist_ok=True)
    truth = {}
    for s, seq in enumerate(sequences):
        base = os.path.join(root, "data", seq)
        for sub in ("color", "depth", "annotations"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        tips = np.stack([make_hand(rng, 0.45)[DO_TIPS] for _ in range(n)]).astype(np.float64)
        tips[..., 0] = -tips[..., 0]  # left hands
        lines3d, lines2d = [], []
        for i in range(n):
            # colour frame (mm) -> label frame: X_c = R (flip X_l) + t
            colour_mm = tips[i] * 1000.0
            flipped = np.linalg.solve(DO_RT[:, :3], (colour_mm - DO_RT[:, 3]).T).T
            raw = flipped * np.array([-1.0, -1.0, 1.0])
            groups = [f"{x:.6f}, {y:.6f}, {z:.6f}" for x, y, z in raw]
            for s_, i_, t_ in missing:
                if s_ == s and i_ == i:
                    groups[t_] = "32001, 32001, 32001"
                    tips[i, t_] = np.nan
            groups += [f"{a:.3f}, {b:.3f}, {c:.3f}" for a, b, c in rng.uniform(-50, 50, (3, 3))]
            lines3d.append("; ".join(groups) + ";")
            lines2d.append("; ".join("10.0, 20.0" for _ in range(8)) + ";")
        with open(os.path.join(base, "annotations", f"{seq}3D.txt"), "w") as f:
            f.write("\n".join(lines3d) + "\n")
        with open(os.path.join(base, "annotations", f"{seq}2D.txt"), "w") as f:
            f.write("\n".join(lines2d) + "\n")
        for i in rng.permutation(n):
            image = background(480, 640, 3 * s + int(i))
            if np.isfinite(tips[i, 0]).all():
                paint_marker(image, project(tips[i, 0], DO_K))
            Image.fromarray(image).save(os.path.join(base, "color", f"Color_{i:04d}.bmp"))
            depth = np.zeros((240, 320), np.uint16)
            Image.fromarray(depth).save(os.path.join(base, "depth", f"Depth_{i:04d}.png"))
        truth[seq] = tips.astype(np.float32)
    return truth


# ----------------------------------------------------------------------------- FreiHAND

FREI_VERSIONS = 4


def write_freihand(data_dir: str, rng: np.random.Generator, n: int = 2, split: str = "training"):
    """FreiHAND_pub_v2/ with ``n`` annotations (x 4 image versions for training).

    Returns ``{'xyz', 'K', 'verts', 'mano', 'scale', 'masks'}`` as written.
    """
    root = os.path.join(data_dir, "FreiHAND_pub_v2")
    os.makedirs(os.path.join(root, split, "rgb"), exist_ok=True)
    xyz = np.stack([make_hand(rng, 0.7) for _ in range(n)])
    K = np.stack(
        [np.array([[480.0 + 5 * i, 0, 112.0 + i], [0, 478.0, 111.0], [0, 0, 1]]) for i in range(n)]
    )
    verts = xyz[:, rng.integers(0, 21, 778)] + rng.normal(0, 0.005, (n, 778, 3))
    mano = rng.normal(0, 0.5, (n, 1, 61))
    scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)

    def dump(name, value):
        with open(os.path.join(root, f"{split}_{name}.json"), "w") as f:
            json.dump(np.asarray(value).tolist(), f)

    for name, value in (("K", K), ("xyz", xyz), ("verts", verts), ("mano", mano), ("scale", scale)):
        dump(name, value)
    versions = FREI_VERSIONS if split == "training" else 1
    for k in range(versions):
        for i in range(n):
            image = background(224, 224, 5 * k + i)
            paint_marker(image, project(xyz[i, THUMB_TIP], K[i]), radius=4)
            Image.fromarray(image).save(
                os.path.join(root, split, "rgb", f"{i + n * k:08d}.jpg"), quality=95
            )
    masks = []
    if split == "training":
        os.makedirs(os.path.join(root, split, "mask"), exist_ok=True)
        for i in range(n):
            mask = np.zeros((224, 224), np.uint8)
            mask[32 + 8 * i : 128, 48:160] = 1
            masks.append(mask)
            Image.fromarray(mask * 255).save(os.path.join(root, split, "mask", f"{i:08d}.jpg"))
    return {"xyz": xyz, "K": K, "verts": verts, "mano": mano[:, 0], "scale": scale, "masks": masks}


# ----------------------------------------------------------------------------- images


def write_huge_png(path, side=20000):
    """A valid all-black 1-bit PNG of ``side`` x ``side`` pixels (a few kB on disk)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat))
        f.write(chunk(b"IEND", b""))
