"""Builds handfit's open hand model (MANO format) from simple geometry; deterministic.

Run ``python -m handfit.assets.build_open_hand`` (needs the ``build`` extra:
scikit-image and fast-simplification) to rewrite ``open_hand.npz`` beside this file.

The model is a right hand in a camera-friendly rest frame: x towards the thumb,
y from the fingertips to the wrist (fingers point to -y), z from the palm to the
back of the hand (the palm faces -z, i.e. a camera looking along +z sees the
palm). The wrist joint is the origin; wrist to middle fingertip is ~19 cm.

How it is made:
- Skeleton: 16 joints in MANO's tree and order plus 5 fingertip ends.
- Surface: a signed distance field, the smooth union of a rounded palm slab and
  tapered capsules for the 15 finger segments, meshed by marching cubes and
  decimated: one watertight, consistently oriented skin.
- Skinning weights: a soft-min over each segment's own distance field, so each
  vertex belongs to the primitive it lies on and blends near joints; the palm
  belongs to the wrist.
- Joint regressor: for each joint, weights over the ring of vertices where its
  two neighbouring primitives blend, corrected (minimum weighted norm) so that
  it reproduces the joint exactly on the template.
- 10 shape directions, linear in the vertices, each displacing the skeleton
  points (finger lengths, palm width and length, ...) or thickening the skin;
  one unit is about one standard deviation of adult hands.
- Pose directions: a small outward bulge where a joint bends, proportional to
  ``1 - cos(angle)``, which is linear in ``R - I`` as MANO's pose blend shapes are.
- Joint frames and limits (flexion, abduction, twist) per finger joint, and
  PCA pose components and a mean pose from poses sampled within those limits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT_PATH = Path(__file__).parent / "open_hand.npz"
NAME = "handfit open hand v1"
GRID_STEP = 0.0015  # metres per marching-cubes cell
TARGET_FACES = 1550
SKIN_TAU = 0.0015  # soft-min temperature of the skinning weights (metres)
BULGE = 0.003  # pose corrective: outward bulge (metres) at a 90 degree bend

# MANO's finger order in its joint tree: index, middle, pinky, ring, thumb.
MANO_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
# Tip vertices are listed thumb, index, middle, ring, pinky.
TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")

# Per finger: base joint position, in-plane splay (degrees, + towards the thumb),
# segment lengths base->...->tip, radii at the base, 2 inner joints and the tip end.
FINGERS = {
    "index": dict(
        base=(0.028, -0.086, 0.0),
        splay=7.0,
        lengths=(0.040, 0.023, 0.020),
        radii=(0.0095, 0.0088, 0.0080, 0.0072),
    ),
    "middle": dict(
        base=(0.006, -0.090, 0.0),
        splay=0.0,
        lengths=(0.044, 0.027, 0.021),
        radii=(0.0100, 0.0092, 0.0083, 0.0074),
    ),
    "ring": dict(
        base=(-0.015, -0.086, 0.0),
        splay=-7.0,
        lengths=(0.041, 0.026, 0.021),
        radii=(0.0094, 0.0087, 0.0079, 0.0071),
    ),
    "pinky": dict(
        base=(-0.033, -0.077, 0.0),
        splay=-15.0,
        lengths=(0.032, 0.019, 0.019),
        radii=(0.0083, 0.0076, 0.0070, 0.0064),
    ),
}
THUMB = dict(
    base=(0.019, -0.022, -0.004),
    dirs=((0.62, -0.72, -0.30), (0.46, -0.84, -0.28), (0.36, -0.90, -0.25)),
    lengths=(0.044, 0.032, 0.026),
    radii=(0.0125, 0.0112, 0.0102, 0.0090),
)
PALM_OUTLINE = np.array(
    [  # x, y of the palm's outline (a convex polygon)
        (-0.028, 0.012),
        (0.022, 0.012),
        (0.036, -0.030),
        (0.034, -0.082),
        (0.006, -0.090),
        (-0.018, -0.087),
        (-0.037, -0.074),
        (-0.039, -0.030),
    ]
)
PALM_HALF_THICKNESS = 0.0085
PALM_ROUNDING = 0.0055
BLEND = 0.005  # smooth-union radius between the palm and each finger's base

# Joint limits (min, max) in radians of flexion, abduction, twist per joint kind.
LIMITS = {
    "mcp": ((-0.35, 1.57), (-0.35, 0.35), (-0.15, 0.15)),
    "pip": ((0.0, 1.75), (-0.05, 0.05), (-0.10, 0.10)),
    "dip": ((-0.10, 1.40), (-0.05, 0.05), (-0.10, 0.10)),
    "thumb_cmc": ((-0.60, 0.90), (-0.60, 0.60), (-0.50, 0.50)),
    "thumb_mcp": ((-0.20, 0.90), (-0.15, 0.15), (-0.20, 0.20)),
    "thumb_ip": ((-0.30, 1.40), (-0.05, 0.05), (-0.10, 0.10)),
}


# How each joint (MANO order) abducts when the hand spreads: + towards the thumb.
SPREAD = np.array([1.0, 0, 0, 0, 0, 0, -1.0, 0, 0, -0.5, 0, 0, 1.0, 0, 0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def skeleton() -> dict:
    """Rest skeleton: joints [16, 3] (MANO order), tips [5, 3] (thumb..pinky), bone dirs."""
    joints = np.zeros((16, 3))
    tips = {}
    chains = {}  # finger -> (joint ids base..dip, points base..tip)
    for f, finger in enumerate(MANO_FINGERS):
        ids = [1 + 3 * f, 2 + 3 * f, 3 + 3 * f]
        if finger == "thumb":
            points = [np.array(THUMB["base"])]
            for d, length in zip(THUMB["dirs"], THUMB["lengths"]):
                points.append(points[-1] + length * _unit(d))
        else:
            spec = FINGERS[finger]
            a = np.deg2rad(spec["splay"])
            d = np.array([np.sin(a), -np.cos(a), 0.0])
            points = [np.array(spec["base"])]
            for length in spec["lengths"]:
                points.append(points[-1] + length * d)
        joints[ids] = points[:3]
        tips[finger] = points[3]
        chains[finger] = (ids, np.stack(points))
    return dict(joints=joints, tips=np.stack([tips[f] for f in TIP_ORDER]), chains=chains)


def _capsule_sdf(p, a, b, ra, rb):
    """Distance field of a tapered capsule from a (radius ra) to b (radius rb)."""
    ab = b - a
    u = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    closest = a + u[..., None] * ab
    return np.linalg.norm(p - closest, axis=-1) - (ra + u * (rb - ra))


def _polygon_sdf2d(xy, poly):
    """Signed 2D distance to a convex polygon (either orientation; negative inside)."""
    x, y = poly[:, 0], poly[:, 1]
    orientation = np.sign(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    d = np.full(xy.shape[:-1], np.inf)
    inside = np.ones(xy.shape[:-1], bool)
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        e = b - a
        w = xy - a
        u = np.clip((w @ e) / (e @ e), 0.0, 1.0)
        d = np.minimum(d, np.linalg.norm(w - u[..., None] * e, axis=-1))
        inside &= orientation * (e[0] * w[..., 1] - e[1] * w[..., 0]) >= 0
    return np.where(inside, -d, d)


def _palm_sdf(p):
    d2 = _polygon_sdf2d(p[..., :2], PALM_OUTLINE) + PALM_ROUNDING
    dz = np.abs(p[..., 2]) - PALM_HALF_THICKNESS
    outside = np.linalg.norm(np.stack([np.maximum(d2, 0), np.maximum(dz, 0)], -1), axis=-1)
    return outside + np.minimum(np.maximum(d2, dz), 0.0) - PALM_ROUNDING


def _smin(a, b, k):
    """Polynomial smooth minimum (Inigo Quilez) with blend radius k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1 - h)


def primitives(skel: dict) -> list:
    """[(owner joint, sdf function)]: the palm (wrist) and the 15 finger segments."""
    prims = [(0, _palm_sdf)]
    for finger in MANO_FINGERS:
        ids, pts = skel["chains"][finger]
        radii = THUMB["radii"] if finger == "thumb" else FINGERS[finger]["radii"]
        for s in range(3):
            a, b, ra, rb = pts[s], pts[s + 1], radii[s], radii[s + 1]
            prims.append((ids[s], lambda p, a=a, b=b, ra=ra, rb=rb: _capsule_sdf(p, a, b, ra, rb)))
    return prims


def hand_sdf(p, prims) -> np.ndarray:
    """The skin's distance field: the palm smoothly joined to each finger."""
    palm = prims[0][1](p)
    out = None
    for f in range(5):
        segs = [prims[1 + 3 * f + s][1](p) for s in range(3)]
        finger = np.minimum(np.minimum(segs[0], segs[1]), segs[2])
        joined = _smin(palm, finger, BLEND)
        out = joined if out is None else np.minimum(out, joined)
    return out


def mesh_surface(prims):
    """Marching cubes of the field, decimated: (vertices [V, 3], faces [F, 3])."""
    import fast_simplification
    import trimesh
    from skimage import measure

    lo, hi = np.array([-0.06, -0.21, -0.06]), np.array([0.10, 0.03, 0.035])
    axes = [np.arange(lo[i], hi[i] + GRID_STEP, GRID_STEP) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    field = hand_sdf(grid, prims)
    verts, faces, _, _ = measure.marching_cubes(field, level=0.0, spacing=(GRID_STEP,) * 3)
    # merging marching cubes' near-duplicate vertices leaves slivers of zero area: drop them
    mesh = trimesh.Trimesh(verts + lo, faces)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    reduction = 1.0 - TARGET_FACES / len(mesh.faces)
    verts, faces = fast_simplification.simplify(mesh.vertices, mesh.faces, reduction)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.fix_normals()
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0):
        raise RuntimeError("open hand surface is not a closed, consistently oriented mesh")
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, np.int32), mesh


def skinning_weights(verts, prims) -> np.ndarray:
    """[V, 16] soft-min over each primitive's distance; joints own several primitives."""
    d = np.stack([np.maximum(f(verts), 0.0) for _, f in prims], -1)  # [V, P]
    logits = -(d - d.min(-1, keepdims=True)) / SKIN_TAU
    w_prim = np.exp(logits)
    weights = np.zeros((len(verts), 16))
    for k, (owner, _) in enumerate(prims):
        weights[:, owner] += w_prim[:, k]
    weights /= weights.sum(-1, keepdims=True)
    weights[weights < 1e-4] = 0.0
    return weights / weights.sum(-1, keepdims=True)


def joint_regressor(verts, weights, joints, parents) -> np.ndarray:
    """[16, V]: per joint, weights on the ring where it blends with its parent, exact on rest."""
    reg = np.zeros((16, len(verts)))
    for j in range(16):
        if parents[j] < 0:  # the wrist: vertices around it, mostly palm
            w0 = np.exp(-np.sum((verts - joints[j]) ** 2, -1) / (2 * 0.015**2))
        else:
            w0 = np.sqrt(weights[:, j] * weights[:, parents[j]])
            w0 *= np.exp(-np.sum((verts - joints[j]) ** 2, -1) / (2 * 0.015**2))
        support = w0 > 1e-3 * w0.max()
        w0 = np.where(support, w0, 0.0)
        w0 /= w0.sum()
        # minimise sum (w - w0)^2 / w0 subject to sum w x = joint and sum w = 1
        a = np.concatenate([verts[support].T, np.ones((1, support.sum()))], 0)  # [4, S]
        b = np.concatenate([joints[j], [1.0]])
        ws = w0[support]
        lam = np.linalg.solve((a * ws) @ a.T, b - a @ ws)
        reg[j, support] = ws + ws * (a.T @ lam)
    return reg


def joint_frames(skel) -> np.ndarray:
    """[15, 3, 3]: rows flexion, abduction and twist axes of the finger joints (MANO order)."""
    frames = np.zeros((15, 3, 3))
    thumb_pad = _unit((-0.55, 0.0, -0.83))  # the thumb's pad faces the palm and the camera
    for finger in MANO_FINGERS:
        ids, pts = skel["chains"][finger]
        pad = thumb_pad if finger == "thumb" else np.array([0.0, 0.0, -1.0])
        for s, j in enumerate(ids):
            twist = _unit(pts[s + 1] - pts[s])
            flex = _unit(np.cross(twist, pad))
            abd = np.cross(twist, flex)
            frames[j - 1] = np.stack([flex, abd, twist])
    return frames


def joint_limits() -> np.ndarray:
    """[15, 3, 2] limits in the frames of ``joint_frames`` (MANO order)."""
    out = np.zeros((15, 3, 2))
    for f, finger in enumerate(MANO_FINGERS):
        kinds = (
            ("thumb_cmc", "thumb_mcp", "thumb_ip") if finger == "thumb" else ("mcp", "pip", "dip")
        )
        for s, kind in enumerate(kinds):
            out[3 * f + s] = np.array(LIMITS[kind])
    return out


def sample_local_poses(rng, n, limits) -> np.ndarray:
    """[n, 15, 3] natural-ish poses: a shared grasp level, per-finger curl, small spread."""
    lo, hi = limits[..., 0], limits[..., 1]
    grasp = rng.beta(1.2, 2.4, (n, 1, 1))  # mostly open hands, some fists
    curl = np.clip(grasp + rng.normal(0.0, 0.25, (n, 5, 1)), 0.0, 1.0)  # per finger
    curl = np.repeat(curl, 3, axis=1) * rng.uniform(0.8, 1.0, (n, 15, 1))
    flex = lo[:, 0] + curl[..., 0] * (hi[:, 0] - lo[:, 0])
    # fingers spread less when curled
    spread = rng.uniform(-1, 1, (n, 1)) * (1 - grasp[..., 0])
    abd_mid = 0.5 * (lo[:, 1] + hi[:, 1])
    abd = abd_mid + 0.5 * (hi[:, 1] - lo[:, 1]) * np.clip(
        spread * SPREAD + rng.normal(0.0, 0.25, (n, 15)), -1, 1
    )
    twist = 0.5 * (lo[:, 2] + hi[:, 2]) + 0.5 * (hi[:, 2] - lo[:, 2]) * np.clip(
        rng.normal(0.0, 0.3, (n, 15)), -1, 1
    )
    return np.stack([flex, abd, twist], -1)


def pose_pca(frames, limits, seed=0, n=20000):
    """PCA of sampled poses: (components [45, 45] orthonormal rows, mean [45])."""
    rng = np.random.default_rng(seed)
    local = sample_local_poses(rng, n, limits)
    axis_angle = np.einsum("jab,nja->njb", frames, local).reshape(n, 45)
    mean = axis_angle.mean(0)
    _, _, vt = np.linalg.svd(axis_angle - mean, full_matrices=False)
    vt *= np.where(vt.sum(1, keepdims=True) < 0, -1.0, 1.0)  # a fixed sign per component
    return vt, mean


def _segment_param(p, a, b):
    ab = b - a
    return np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)


def shape_directions(verts, weights, skel) -> np.ndarray:
    """[V, 3, 10] linear shape directions (see the module docstring)."""
    joints, tips = skel["joints"], skel["tips"]
    parents = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
    tip_of = {TIP_ORDER.index(f): skel["chains"][f][0][2] for f in MANO_FINGERS}
    end_of = {}  # joint -> (end point index into points21, axis end)
    points = np.concatenate([joints, tips])  # [21, 3]: 16 joints then tips thumb..pinky
    for j in range(1, 16):
        children = [c for c in range(16) if parents[c] == j]
        end_of[j] = children[0] if children else 16 + next(t for t, d in tip_of.items() if d == j)

    def finger_points(finger):
        ids, _ = skel["chains"][finger]
        return list(ids) + [16 + TIP_ORDER.index(finger)]

    def lengthen(delta, finger, factor):
        """Scales a finger's segments by (1 + factor) from its base."""
        pts = finger_points(finger)
        for k in range(1, 4):
            delta[pts[k]] += factor * (points[pts[k]] - points[pts[0]])

    def move_finger(delta, finger, d):
        for k in finger_points(finger):
            delta[k] += d

    def field(delta, radial=0.0, palm_z=0.0):
        """Vertex displacements [V, 3] from skeleton-point displacements [21, 3]."""
        disp = np.zeros_like(verts)
        # the palm (wrist) follows the affine map that best moves the wrist and finger bases
        palm_ids = [0, 1, 4, 7, 10]
        src = np.concatenate([points[palm_ids], np.ones((5, 1))], 1)
        affine, *_ = np.linalg.lstsq(src, delta[palm_ids], rcond=None)
        palm = np.concatenate([verts, np.ones((len(verts), 1))], 1) @ affine
        palm[:, 2] += palm_z * verts[:, 2]
        disp += weights[:, :1] * palm
        for j in range(1, 16):
            a, b = points[j], points[end_of[j]]
            u = _segment_param(verts, a, b)[:, None]
            axis = a + u * (b - a)
            seg = (1 - u) * delta[j] + u * delta[end_of[j]] + radial * (verts - axis)
            disp += weights[:, j : j + 1] * seg
        return disp

    dirs = []
    # 0: overall size, 6 %: a uniform scaling about the wrist
    dirs.append(0.06 * verts)
    # 1: finger length, 6 %
    delta = np.zeros((21, 3))
    for f in MANO_FINGERS:
        lengthen(delta, f, 0.06)
    dirs.append(field(delta))
    # 2: palm width, 6 % about the middle finger
    delta = np.zeros((21, 3))
    for f in MANO_FINGERS:
        base = skel["chains"][f][0][0]
        move_finger(delta, f, np.array([0.06 * (points[base, 0] - points[4, 0]), 0, 0]))
    dirs.append(field(delta))
    # 3: palm length, 5 %
    delta = np.zeros((21, 3))
    for f in MANO_FINGERS:
        base = skel["chains"][f][0][0]
        move_finger(delta, f, np.array([0, 0.05 * points[base, 1], 0]))
    dirs.append(field(delta))
    # 4: finger and palm thickness, 7 %
    dirs.append(field(np.zeros((21, 3)), radial=0.07, palm_z=0.07))
    # 5: thumb length, 7 %
    delta = np.zeros((21, 3))
    lengthen(delta, "thumb", 0.07)
    dirs.append(field(delta))
    # 6: index longer and ring shorter (the 2D:4D ratio), 4 %
    delta = np.zeros((21, 3))
    lengthen(delta, "index", 0.04)
    lengthen(delta, "ring", -0.04)
    dirs.append(field(delta))
    # 7: pinky length, 7 %
    delta = np.zeros((21, 3))
    lengthen(delta, "pinky", 0.07)
    dirs.append(field(delta))
    # 8: knuckle arch: outer fingers' bases move towards the wrist, 3 mm
    delta = np.zeros((21, 3))
    move_finger(delta, "index", np.array([0, 0.0015, 0]))
    move_finger(delta, "pinky", np.array([0, 0.003, 0]))
    dirs.append(field(delta))
    # 9: thumb base towards the fingers and the palm, 4 mm
    delta = np.zeros((21, 3))
    move_finger(delta, "thumb", np.array([0.0, -0.004, -0.002]))
    dirs.append(field(delta))
    return np.stack(dirs, -1)


def pose_directions(verts, normals, weights) -> np.ndarray:
    """[V, 3, 135]: an outward bulge b * (1 - cos angle) where each joint bends."""
    parents = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
    posedirs = np.zeros((len(verts), 3, 135))
    for j in range(1, 16):
        blend = 4.0 * weights[:, j] * weights[:, parents[j]]  # 1 mid-blend, 0 away
        # 1 - cos(angle) = -(trace(R) - 3) / 2 = -sum(diag(R - I)) / 2
        for d in (0, 4, 8):
            posedirs[:, :, 9 * (j - 1) + d] = -0.5 * BULGE * blend[:, None] * normals
    return posedirs


def fingertip_ids(verts, skel) -> tuple[int, ...]:
    """The vertex furthest along each finger's last segment, thumb..pinky."""
    ids = []
    for finger in TIP_ORDER:
        _, pts = skel["chains"][finger]
        d = _unit(pts[3] - pts[2])
        near = np.linalg.norm(verts - pts[3], axis=-1) < 0.015
        score = np.where(near, (verts - pts[2]) @ d, -np.inf)
        ids.append(int(np.argmax(score)))
    return tuple(ids)


def build() -> dict[str, np.ndarray]:
    """All arrays of the open hand model, in MANO's keys (see ``handfit.mano.to_arrays``)."""
    skel = skeleton()
    parents = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
    prims = primitives(skel)
    verts, faces, mesh = mesh_surface(prims)
    weights = skinning_weights(verts, prims)
    frames, limits = joint_frames(skel), joint_limits()
    components, mean = pose_pca(frames, limits)
    return dict(
        v_template=verts.astype(np.float32),
        shapedirs=shape_directions(verts, weights, skel).astype(np.float32),
        posedirs=pose_directions(verts, np.asarray(mesh.vertex_normals), weights).astype(
            np.float32
        ),
        J_regressor=joint_regressor(verts, weights, skel["joints"], parents).astype(np.float32),
        weights=weights.astype(np.float32),
        f=faces,
        kintree_table=np.stack([np.array(parents), np.arange(16)]).astype(np.int64),
        hands_components=components.astype(np.float32),
        hands_mean=mean.astype(np.float32),
        joint_frames=frames.astype(np.float32),
        joint_limits=limits.astype(np.float32),
        fingertip_ids=np.array(fingertip_ids(verts, skel)),
        side=np.array("right"),
        name=np.array(NAME),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT_PATH), help="where to write the .npz")
    args = parser.parse_args()
    arrays = build()
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(arrays['v_template'])} vertices, {len(arrays['f'])} faces")


if __name__ == "__main__":
    main()
