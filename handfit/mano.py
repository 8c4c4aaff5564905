"""The MANO hand model as a pytree of arrays: loading, forward kinematics, left hands.

``forward`` is pure jnp (jit, vmap and grad all work, in float32 or float64):
shape blend shapes, pose blend shapes from ``R - I`` of the 15 finger joints,
joints regressed from the shaped template, the kinematic chain, linear blend
skinning, then the 21 joints in handfit's canonical order (16 regressed joints
and 5 fingertip vertices; see ``handfit.skeleton``).

Models come from the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (read
without chumpy, through ``handfit.safe_pickle``), from ``.npz`` files with the same
keys (smplx's convention; ``save_npz`` writes one), or from handfit's open hand
model (``open_hand``), which needs no licence.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from handfit import geometry, safe_pickle, skeleton

NUM_JOINTS = 16  # MANO's own joints: the wrist and 3 per finger.
NUM_POSE = 45  # axis-angle of the 15 finger joints.
OPEN_HAND_PATH = Path(__file__).parent / "assets" / "open_hand.npz"
MANO_DOWNLOAD = (
    "https://mano.is.tue.mpg.de (sign in, download 'Models & Code', use mano_v*/models/)"
)

# Fingertip vertices of the official 778-vertex models (thumb, index, middle,
# ring, pinky), as manopth and manotorch use them.
MANO_FINGERTIPS = {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)}
# Axis-angle of a mirrored joint rotation: M R(r) M = R(diag(1, -1, -1) r) for M = diag(-1, 1, 1).
_MIRROR_AXIS_ANGLE = np.array([1.0, -1.0, -1.0])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HandModel:
    """A MANO-format hand model; V vertices, F faces, S shape directions.

    Attributes:
      v_template: [V, 3] rest vertices (metres).
      shapedirs: [V, 3, S] shape blend shapes.
      posedirs: [V, 3, 135] pose blend shapes over the 15 joints' ``R - I``.
      j_regressor: [16, V] dense joint regressor.
      weights: [V, 16] skinning weights.
      faces: [F, 3] int32 triangles, counter-clockwise seen from outside.
      hands_components: [45, 45] PCA pose components (one per row).
      hands_mean: [45] MANO's mean pose (added when ``flat_hand_mean=False``).
      joint_frames: [15, 3, 3] or None; rows are each finger joint's flexion,
        abduction and twist axes in model coordinates (open hand model only).
      joint_limits: [15, 3, 2] or None; (min, max) radians of flexion, abduction
        and twist in those frames (open hand model only).
      parents: static parent index of each of the 16 joints (-1 for the wrist).
      fingertip_ids: static vertex ids of the thumb, index, middle, ring, pinky tips.
      side: 'right' or 'left'.
      name: what the model is, printed wherever results are reported.
    """

    v_template: jnp.ndarray
    shapedirs: jnp.ndarray
    posedirs: jnp.ndarray
    j_regressor: jnp.ndarray
    weights: jnp.ndarray
    faces: jnp.ndarray
    hands_components: jnp.ndarray
    hands_mean: jnp.ndarray
    joint_frames: jnp.ndarray | None = None
    joint_limits: jnp.ndarray | None = None
    parents: tuple[int, ...] = dataclasses.field(
        default=skeleton.MANO_PARENTS, metadata=dict(static=True)
    )
    fingertip_ids: tuple[int, ...] = dataclasses.field(default=(), metadata=dict(static=True))
    side: str = dataclasses.field(default="right", metadata=dict(static=True))
    name: str = dataclasses.field(default="", metadata=dict(static=True))

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    def astype(self, dtype) -> HandModel:
        """The model with its float arrays cast to ``dtype`` (faces stay int32)."""
        return jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a, self
        )


class ManoOutput(NamedTuple):
    """vertices: [B, V, 3]; joints: [B, 21, 3] in canonical order."""

    vertices: jnp.ndarray
    joints: jnp.ndarray


# ---------------------------------------------------------------------------
# Loading and saving


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {msg}")


def _check_finite(array: np.ndarray, key: str, where: str) -> None:
    if not np.all(np.isfinite(array)):
        first = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{where}: {key} holds NaN or inf (first at index {first})")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (numeric and text arrays only; nothing is unpickled)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not an .npz archive (a zip of .npy arrays, as numpy.savez writes); "
            "for the official MANO_*.pkl files keep the .pkl name"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {}
            for key in z.files:
                try:
                    arrays[key] = z[key]
                except ValueError as e:  # object arrays: numpy would need to unpickle them
                    what = (
                        "holds Python objects (dtype object)"
                        if "allow_pickle" in str(e)
                        else "is not a readable .npy array"
                    )
                    raise ValueError(
                        f"{path}: array {key!r} {what}; a hand model .npz may hold numeric and "
                        "text arrays only"
                    ) from None
            return arrays
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({e})") from e


# MANO's keys that every model file holds (``side``, ``fingertip_ids``, ``name``,
# ``joint_frames`` and ``joint_limits`` are optional).
_REQUIRED = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
    "hands_components",
    "hands_mean",
)


def from_arrays(
    arrays: dict,
    *,
    where: str,
    side: str | None = None,
    fingertip_ids: tuple[int, ...] | None = None,
    name: str | None = None,
) -> HandModel:
    """Builds a checked ``HandModel`` from MANO's keys (``v_template``, ``shapedirs``, ...).

    ``where`` names the source in error messages. ``side`` and ``fingertip_ids`` are
    taken from the arrays when they hold them (keys ``side``, ``fingertip_ids``), else
    from the arguments, else (for 778-vertex models) MANO's published tip ids.
    """
    missing = [k for k in _REQUIRED if k not in arrays]
    _check(
        not missing, where, f"not a MANO model: missing keys {missing} (expected {list(_REQUIRED)})"
    )
    mano_arrays = _read_mano_arrays(arrays, where)
    _check_mano_arrays(mano_arrays, where)
    n_v = mano_arrays["v_template"].shape[0]
    parents = _parents(arrays["kintree_table"], where)
    side = str(np.asarray(arrays["side"])) if "side" in arrays else side
    _check(side in ("right", "left"), where, "hand side unknown: pass side='right' or side='left'")
    fingertip_ids = _fingertip_ids(arrays, fingertip_ids, side, n_v, where)
    frames = _optional_array(arrays, "joint_frames", (15, 3, 3), where)
    limits = _optional_array(arrays, "joint_limits", (15, 3, 2), where)
    if name is None:
        name = str(np.asarray(arrays["name"])) if "name" in arrays else Path(where).name
    return HandModel(
        v_template=mano_arrays["v_template"],
        shapedirs=mano_arrays["shapedirs"],
        posedirs=mano_arrays["posedirs"],
        j_regressor=mano_arrays["J_regressor"],
        weights=mano_arrays["weights"],
        faces=mano_arrays["f"],
        hands_components=mano_arrays["hands_components"],
        hands_mean=mano_arrays["hands_mean"],
        joint_frames=frames,
        joint_limits=limits,
        parents=parents,
        fingertip_ids=fingertip_ids,
        side=side,
        name=name,
    )


def _read_mano_arrays(arrays: dict, where: str) -> dict[str, np.ndarray]:
    """MANO's arrays (by MANO's keys, ``kintree_table`` left out) as numpy: float32, ``f``
    int32, ``hands_mean`` flat, ``J_regressor`` dense; checks ``v_template`` is [V, 3]."""
    v = np.asarray(arrays["v_template"], np.float32)
    _check(v.ndim == 2 and v.shape[1] == 3, where, f"v_template must be [V, 3], got {v.shape}")
    return {
        "v_template": v,
        "J_regressor": _dense_regressor(arrays["J_regressor"], v.shape[0], where),
        "shapedirs": np.asarray(arrays["shapedirs"], np.float32),
        "posedirs": np.asarray(arrays["posedirs"], np.float32),
        "weights": np.asarray(arrays["weights"], np.float32),
        "f": np.asarray(arrays["f"]).astype(np.int32),
        "hands_components": np.asarray(arrays["hands_components"], np.float32),
        "hands_mean": np.asarray(arrays["hands_mean"], np.float32).reshape(-1),
    }


def _dense_regressor(j_reg, n_v: int, where: str) -> np.ndarray:
    """[16, V] float32 ``J_regressor`` from a dense or ``scipy.sparse`` one; a sparse one's
    shape is checked before densifying (a shape may ask for TiBs)."""
    if scipy.sparse.issparse(j_reg):
        _check(
            j_reg.shape == (NUM_JOINTS, n_v),
            where,
            f"J_regressor must have shape [{NUM_JOINTS}, {n_v}] (V={n_v}), got {list(j_reg.shape)}",
        )
        j_reg = j_reg.toarray()
    return np.asarray(j_reg, np.float32)


def _check_mano_arrays(mano_arrays: dict[str, np.ndarray], where: str) -> None:
    """Checks ``_read_mano_arrays``'s arrays: shapes for V = ``v_template``'s vertices, face
    ids in [0, V), no NaN or inf."""
    n_v = mano_arrays["v_template"].shape[0]
    for key, shape in [
        ("shapedirs", (n_v, 3, None)),
        ("posedirs", (n_v, 3, 9 * (NUM_JOINTS - 1))),
        ("J_regressor", (NUM_JOINTS, n_v)),
        ("weights", (n_v, NUM_JOINTS)),
        ("f", (None, 3)),
        ("hands_components", (None, NUM_POSE)),
        ("hands_mean", (NUM_POSE,)),
    ]:
        arr = mano_arrays[key]
        ok = arr.ndim == len(shape) and all(s is None or a == s for a, s in zip(arr.shape, shape))
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        _check(ok, where, f"{key} must have shape {want} (V={n_v}), got {list(arr.shape)}")
    faces = mano_arrays["f"]
    _check(faces.min() >= 0 and faces.max() < n_v, where, f"f holds vertex ids outside [0, {n_v})")
    for key in (
        "v_template",
        "shapedirs",
        "posedirs",
        "J_regressor",
        "weights",
        "hands_components",
        "hands_mean",
    ):
        _check_finite(mano_arrays[key], key, where)


def _parents(kintree_table, where: str) -> tuple[int, ...]:
    """The 16 joints' parents (-1 for the wrist) from MANO's [2, 16] ``kintree_table``,
    checked to be MANO's tree."""
    kintree = np.asarray(kintree_table).astype(np.int64)
    _check(
        kintree.shape == (2, NUM_JOINTS),
        where,
        f"kintree_table must have shape [2, {NUM_JOINTS}], got {list(kintree.shape)}",
    )
    parents = tuple(int(p) if i else -1 for i, p in enumerate(kintree[0]))
    _check(
        parents == skeleton.MANO_PARENTS,
        where,
        f"kintree_table parents {parents} differ from MANO's {skeleton.MANO_PARENTS}",
    )
    return parents


def _fingertip_ids(
    arrays: dict, given: tuple[int, ...] | None, side: str, n_v: int, where: str
) -> tuple[int, ...]:
    """The 5 fingertip vertex ids (thumb to pinky): the arrays' ``fingertip_ids``, else
    ``given``, else MANO's for a 778-vertex ``side`` hand; checked to lie in [0, V)."""
    if "fingertip_ids" in arrays:
        given = tuple(int(i) for i in np.asarray(arrays["fingertip_ids"]))
    elif given is None and n_v == 778:
        given = MANO_FINGERTIPS[side]
    _check(
        given is not None and len(given) == 5,
        where,
        "fingertip vertex ids unknown: pass fingertip_ids=(thumb, index, middle, ring, pinky)",
    )
    _check(all(0 <= i < n_v for i in given), where, f"fingertip_ids {given} outside [0, {n_v})")
    return tuple(given)


def _optional_array(
    arrays: dict, key: str, shape: tuple[int, ...], where: str
) -> np.ndarray | None:
    """``arrays[key]`` as float32 checked to be ``shape`` and finite, or None if absent."""
    value = arrays.get(key)
    if value is None:
        return None
    value = np.asarray(value, np.float32)
    want = "[" + ", ".join(str(s) for s in shape) + "]"
    _check(value.shape == shape, where, f"{key} must be {want}, got {value.shape}")
    _check_finite(value, key, where)
    return value


def _side_from_name(path: Path) -> str | None:
    stem = path.stem.lower()
    return "left" if "left" in stem else "right" if "right" in stem else None


def load(
    path: str | os.PathLike,
    *,
    side: str | None = None,
    fingertip_ids: tuple[int, ...] | None = None,
    fix_left_shapedirs: bool | str = "auto",
) -> HandModel:
    """Reads a MANO model: the official ``.pkl`` (no chumpy needed) or an ``.npz``.

    Args:
      path: ``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl`` or an ``.npz`` with the same keys.
      side: 'right' or 'left'; by default from the file (``side`` key) or its name.
      fingertip_ids: the 5 tip vertex ids; by default from the file, or MANO's.
      fix_left_shapedirs: the official MANO_LEFT file has the x component of its
        shape directions with the wrong sign (it equals the right model's instead of
        its mirror: smplx issue 48, arctic issue 50), so shape changes move a left
        hand's vertices as if it were a right hand. ``True`` negates
        ``shapedirs[:, 0, :]`` of a left model; ``False`` leaves it; ``'auto'`` (the
        default) compares with ``MANO_RIGHT.pkl``/``.npz`` beside the file and negates
        only when the two x components agree (the known defect), and leaves the file
        as it is when no right model is beside it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MANO model file not found: {path}. Get MANO_RIGHT.pkl / MANO_LEFT.pkl from "
            f"{MANO_DOWNLOAD} and point --config.hand.model_path at one, or leave it empty "
            "to use handfit's open hand model."
        )
    if path.suffix == ".npz":
        arrays = _read_npz(path)
    else:
        arrays = safe_pickle.load(path)
        if not isinstance(arrays, dict):
            raise ValueError(
                f"{path}: not a MANO model: the pickle holds a "
                f"{type(arrays).__name__}, expected a dict of arrays"
            )
    side = side or _side_from_name(path)
    model = from_arrays(arrays, where=str(path), side=side, fingertip_ids=fingertip_ids)
    if model.side == "left" and fix_left_shapedirs:
        if fix_left_shapedirs == "auto":
            right = next(
                (
                    p
                    for p in (
                        path.with_name(f"MANO_RIGHT{path.suffix}"),
                        path.with_name("MANO_RIGHT.pkl"),
                        path.with_name("MANO_RIGHT.npz"),
                    )
                    if p.is_file()
                ),
                None,
            )
            if right is None:
                return model
            right_dirs = load(right, side="right").shapedirs
            if np.abs(model.shapedirs[:, 0] - right_dirs[:, 0]).sum() >= 1.0:
                return model
        fixed = np.array(model.shapedirs)
        fixed[:, 0, :] *= -1
        model = dataclasses.replace(model, shapedirs=fixed)
    return model


def to_arrays(model: HandModel) -> dict[str, np.ndarray]:
    """The model as MANO's keys (plus handfit's ``side``, ``fingertip_ids``, ``name``...)."""
    out = dict(
        v_template=model.v_template,
        shapedirs=model.shapedirs,
        posedirs=model.posedirs,
        J_regressor=model.j_regressor,
        weights=model.weights,
        f=model.faces,
        kintree_table=np.stack([np.array(model.parents), np.arange(NUM_JOINTS)]),
        hands_components=model.hands_components,
        hands_mean=model.hands_mean,
        side=np.array(model.side),
        fingertip_ids=np.array(model.fingertip_ids),
        name=np.array(model.name),
    )
    if model.joint_frames is not None:
        out["joint_frames"] = model.joint_frames
    if model.joint_limits is not None:
        out["joint_limits"] = model.joint_limits
    return {k: np.asarray(v) for k, v in out.items()}


def save_npz(model: HandModel, path: str | os.PathLike) -> None:
    """Writes the model as an ``.npz`` that ``load`` reads back (smplx's key names)."""
    np.savez_compressed(path, **to_arrays(model))


@functools.cache
def _open_hand_right() -> HandModel:
    if not OPEN_HAND_PATH.is_file():
        raise FileNotFoundError(
            f"the open hand model {OPEN_HAND_PATH} is missing from this install; rebuild it "
            "with: python -m handfit.assets.build_open_hand"
        )
    return load(OPEN_HAND_PATH)


def open_hand(side: str = "right") -> HandModel:
    """handfit's open hand model (MANO format, no licence needed); 'right' or 'left'."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    model = _open_hand_right()
    return model if side == "right" else mirror(model)


def get_model(model_path: str = "", side: str = "right") -> HandModel:
    """The configured hand: the MANO file at ``model_path``, or the open hand model if empty.

    A right-hand file asked for as ``side='left'`` is mirrored (and vice versa).
    """
    if not model_path:
        return open_hand(side)
    model = load(model_path)
    return model if model.side == side else mirror(model)


def from_config(config) -> HandModel:
    """The hand model of a run's ``config.hand`` (``model_path``, ``side``; see
    :func:`get_model`), loaded once: later calls with the same settings return the same
    model until the file changes."""
    path = config.hand.model_path
    stamp = None
    if path and os.path.isfile(path):
        stat = os.stat(path)
        stamp = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    return _model_once(path, config.hand.side, stamp)


@functools.lru_cache(maxsize=4)
def _model_once(path: str, side: str, stamp: tuple | None) -> HandModel:
    """:func:`get_model`, cached by the path, the side and the file's identity ``stamp``."""
    return get_model(path, side)


def mirror(model: HandModel) -> HandModel:
    """The mirror image of a model across the x = 0 plane (a left hand from a right one).

    Vertices and shape directions flip x; a pose ``r`` of the mirrored model is the
    mirror of the pose ``r * (1, -1, -1)`` of the original, so pose blend shapes,
    PCA components, the mean pose and the joint frames are converted with that
    map; faces swap two corners to stay counter-clockwise from outside.
    """
    m = np.array([-1.0, 1.0, 1.0], np.float32)
    posedirs = np.asarray(model.posedirs).reshape(model.num_vertices, 3, 15, 3, 3)
    # feature (R' - I)_jk = m_j m_k (R - I)_jk; output component c flips with m_c.
    posedirs = (
        posedirs
        * m[None, :, None, None, None]
        * m[None, None, None, :, None]
        * m[None, None, None, None, :]
    )
    per_joint = np.tile(_MIRROR_AXIS_ANGLE, 15).astype(np.float32)
    frames = model.joint_frames
    if frames is not None:
        frames = np.asarray(frames) * _MIRROR_AXIS_ANGLE.astype(np.float32)[None, None, :]
    return dataclasses.replace(
        model,
        v_template=np.asarray(model.v_template) * m,
        shapedirs=np.asarray(model.shapedirs) * m[None, :, None],
        posedirs=posedirs.reshape(model.num_vertices, 3, -1),
        faces=np.asarray(model.faces)[:, ::-1].copy(),
        hands_components=np.asarray(model.hands_components) * per_joint[None, :],
        hands_mean=np.asarray(model.hands_mean) * per_joint,
        joint_frames=frames,
        side="left" if model.side == "right" else "right",
        name=f"{model.name} (mirrored)",
    )


# ---------------------------------------------------------------------------
# Forward


def _levels(parents: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Joints grouped by depth below the root: [(joint ids, their parents), ...]."""
    depth = [0] * len(parents)
    for i, p in enumerate(parents):
        depth[i] = 0 if p < 0 else depth[p] + 1
    out = []
    for d in range(1, max(depth) + 1):
        ids = np.array([i for i in range(len(parents)) if depth[i] == d])
        out.append((ids, np.array([parents[i] for i in ids])))
    return out


def full_pose(
    model: HandModel, pose: jnp.ndarray, *, use_pca: bool = False, flat_hand_mean: bool = True
) -> jnp.ndarray:
    """Finger pose ``[B, 45]`` axis-angle from ``pose``: [B, 45], or [B, n] PCA coefficients."""
    if use_pca:
        n = pose.shape[-1]
        if n > NUM_POSE:
            raise ValueError(f"pose: at most {NUM_POSE} PCA coefficients, got {n}")
        pose = pose @ model.hands_components[:n].astype(pose.dtype)
    elif pose.shape[-1] != NUM_POSE:
        raise ValueError(
            f"pose must be [B, {NUM_POSE}] axis-angle (or pass use_pca=True), got {pose.shape}"
        )
    if not flat_hand_mean:
        pose = pose + model.hands_mean.astype(pose.dtype)
    return pose


def sample_poses(
    key: jax.Array, model: HandModel, n: int, *, pca_components: int = 6, pca_scale: float = 1.0
) -> jnp.ndarray:
    """Random plausible finger poses ``[n, 45]`` (full axis-angle, flat hand mean).

    With joint limits (the open hand model): each hand draws a grasp level g ~ U(0, 1);
    each joint's flexion is ``lo + (hi - lo) * clip(g + N(0, 0.2), 0, 1)``, its
    abduction and twist uniform within the middle half of their ranges. Without (MANO
    files): ``pca_components`` PCA coefficients ~ N(0, pca_scale^2) around MANO's mean.
    """
    if model.joint_limits is None:
        coeffs = pca_scale * jax.random.normal(key, (n, pca_components))
        return full_pose(model, coeffs, use_pca=True, flat_hand_mean=False)
    lo, hi = model.joint_limits[..., 0], model.joint_limits[..., 1]  # [15, 3]
    k_grasp, k_flex, k_rest = jax.random.split(key, 3)
    grasp = jax.random.uniform(k_grasp, (n, 1))
    curl = jnp.clip(grasp + 0.2 * jax.random.normal(k_flex, (n, 15)), 0.0, 1.0)
    other = jax.random.uniform(k_rest, (n, 15, 2), minval=0.25, maxval=0.75)
    fraction = jnp.concatenate([curl[..., None], other], -1)
    local = lo + (hi - lo) * fraction  # [n, 15, 3] flexion, abduction, twist
    return jnp.einsum("jab,nja->njb", model.joint_frames, local).reshape(n, NUM_POSE)


def _blend(dirs: jnp.ndarray, coeffs: jnp.ndarray) -> jnp.ndarray:
    """Blend-shape offsets Σ_k dirs[v, c, k] coeffs[b, k]: [B, V, 3]; dirs [V, 3, K].

    Written as dirs @ coeffs^T so that neither this product nor its gradient needs ``dirs``
    transposed: inside a compiled loop (refinement) XLA would otherwise copy the 1.3 MB
    pose blend shapes on every step.
    """
    v, c, k = dirs.shape
    dtype = jnp.result_type(dirs, coeffs)
    flat = dirs.reshape(v * c, k).astype(dtype)
    out = jax.lax.dot_general(flat, coeffs.astype(dtype), (((1,), (1,)), ((), ())))
    return out.T.reshape(coeffs.shape[0], v, c)


def forward(
    model: HandModel,
    pose: jnp.ndarray,
    shape: jnp.ndarray,
    global_rot: jnp.ndarray | None = None,
    *,
    use_pca: bool = False,
    flat_hand_mean: bool = True,
) -> ManoOutput:
    """Posed hand meshes and their 21 joints, in the model's frame.

    Args:
      model: the hand model.
      pose: [B, 45] axis-angle of the 15 finger joints in MANO's joint order, or
        [B, n] PCA coefficients (n <= 45) with ``use_pca=True``.
      shape: [B, n] shape coefficients, n <= the model's shape directions (10 for MANO).
      global_rot: [B, 3] axis-angle of the wrist (about the wrist joint); None for none.
      use_pca: read ``pose`` as PCA coefficients.
      flat_hand_mean: if False, add MANO's mean pose to ``pose`` (as MANO does).
    Returns:
      ``ManoOutput(vertices [B, V, 3], joints [B, 21, 3] canonical order)``.
    """
    if pose.ndim != 2 or shape.ndim != 2 or pose.shape[0] != shape.shape[0]:
        raise ValueError(
            f"pose [B, 45] and shape [B, 10] must be 2-D with one batch size, got "
            f"pose {pose.shape} and shape {shape.shape}"
        )
    if shape.shape[1] > model.num_betas:
        raise ValueError(
            f"shape has {shape.shape[1]} coefficients; the model has "
            f"{model.num_betas} shape directions"
        )
    batch = pose.shape[0]
    dtype = jnp.result_type(pose.dtype, shape.dtype, jnp.float32)
    model = jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, model
    )
    if global_rot is None:
        global_rot = jnp.zeros((batch, 3), dtype)
    elif global_rot.shape != (batch, 3):
        raise ValueError(f"global_rot must be [B, 3] = [{batch}, 3], got {global_rot.shape}")

    pose = full_pose(model, pose.astype(dtype), use_pca=use_pca, flat_hand_mean=flat_hand_mean)
    rots = geometry.axis_angle_to_matrix(
        jnp.concatenate([global_rot.astype(dtype), pose], -1).reshape(batch, NUM_JOINTS, 3)
    )

    v_shaped = model.v_template + _blend(model.shapedirs[..., : shape.shape[1]], shape)
    rest_joints = jnp.einsum("jv,bvc->bjc", model.j_regressor, v_shaped)  # [B, 16, 3]
    pose_feature = (rots[:, 1:] - jnp.eye(3, dtype=dtype)).reshape(batch, -1)
    v_posed = v_shaped + _blend(model.posedirs, pose_feature)

    # Kinematic chain, one depth level at a time: world rotation and joint position.
    world_r = rots
    world_t = rest_joints
    for ids, par in _levels(model.parents):
        offset = rest_joints[:, ids] - rest_joints[:, par]
        world_t = world_t.at[:, ids].set(
            jnp.einsum("bjkl,bjl->bjk", world_r[:, par], offset) + world_t[:, par]
        )
        world_r = world_r.at[:, ids].set(world_r[:, par] @ rots[:, ids])
    # Skinning transforms relative to the rest pose: x -> R x + (t - R J).
    rel_t = world_t - jnp.einsum("bjkl,bjl->bjk", world_r, rest_joints)
    blend_r = jnp.einsum("vj,bjkl->bvkl", model.weights, world_r)
    blend_t = jnp.einsum("vj,bjk->bvk", model.weights, rel_t)
    vertices = jnp.einsum("bvkl,bvl->bvk", blend_r, v_posed) + blend_t

    tips = vertices[:, np.asarray(model.fingertip_ids)]
    joints = jnp.concatenate([world_t, tips], 1)[:, np.asarray(skeleton.MANO_TO_CANONICAL)]
    return ManoOutput(vertices=vertices, joints=joints)
