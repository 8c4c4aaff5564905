"""The training losses of Eqs. 2, 3, 6, 8, 9, 10-12 and Eq. 7's weighted sum, as pure functions.

Every function is keyword-only, pure ``jnp`` (jit, vmap and grad work) and returns a
scalar unless it says otherwise. Conventions shared by all terms:

* Each term is the paper's squared norm ``||a - b||^2`` taken as a *mean* over its
  elements (feature channels, heat-map pixels, joints, mask pixels, vertices) and
  over the batch, so a term's size does not depend on the resolution or on D.
  Joint terms average the squared Euclidean distance of each joint (summed over
  its 2 or 3 coordinates) over the joints that are visible.
* 2D joints are in crop pixels (x, y) with pixel (row r, col c) centred at
  (c + 0.5, r + 0.5); 2D joint losses divide by ``crop_size`` first, so they are
  in units of the crop's side.
* ``visible`` masks ([B, 21], 1 = labelled/visible) remove joints from 2D (and, if
  given, 3D) terms; a batch with nothing visible gives 0 and a zero gradient, not NaN.
* Heat maps are channels-last, ``[B, H, W, 21]``, as the CPM returns them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from handfit import defaults, geometry, skeleton

# Eq. 7's weights and Eq. 12's threshold (crop pixels), as configs/default.py's loss section
# gives them (each weight's reason is written there).
DEFAULT_WEIGHTS = dict(defaults.section("loss.weights"))
DEFAULT_TAU = defaults.section("loss").tau
CROP_SCALE = defaults.section("data").crop_scale  # Eq. 8's c over the joints' box side
# Roots nearer than this (metres) or behind the camera are treated as at this depth.
MIN_DEPTH = 1e-3


def _masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """sum(mask * values) / max(sum(mask), 1) for broadcastable ``values`` and ``mask``."""
    mask = jnp.broadcast_to(mask, values.shape).astype(values.dtype)
    return jnp.sum(mask * values) / jnp.maximum(jnp.sum(mask), 1.0)


def _joint_mask(visible: jnp.ndarray | None, like: jnp.ndarray) -> jnp.ndarray:
    """[B, J] float mask from ``visible`` (all ones when None) for joints ``like`` [B, J, k]."""
    if visible is None:
        return jnp.ones(like.shape[:-1], like.dtype)
    return visible.astype(like.dtype)


# ---------------------------------------------------------------------------
# Eq. 2 and Eq. 3: the 2D evidence


def feature_loss(*, features: jnp.ndarray, masked_features: jnp.ndarray) -> jnp.ndarray:
    """Eq. 2, ``mean ||f_F(x) - f_F(x * s*)||^2`` over the batch and the D channels.

    Args:
      features: [B, D] pooled features of the whole crop.
      masked_features: [B, D] pooled features of the crop with its background zeroed.
    Both sides carry gradients; stop one with ``jax.lax.stop_gradient`` to use it as
    a fixed target.
    """
    return jnp.mean(jnp.square(features - masked_features))


def mask_loss(*, logits: jnp.ndarray, masks: jnp.ndarray, has_mask: jnp.ndarray) -> jnp.ndarray:
    """The mask head's binary cross-entropy (not in the paper), nats per cell.

    Args:
      logits: [B, h, w] the head's logits.
      masks: [B, h, w] the true masks averaged over each cell, in [0, 1] (soft targets).
      has_mask: [B] 1 where the example has a mask; the others are left out.
    """
    per_cell = optax.sigmoid_binary_cross_entropy(logits, masks)
    return _masked_mean(per_cell, has_mask.astype(per_cell.dtype)[:, None, None])


def _stages(heatmaps: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """``[S, B, H, W, J]`` maps of every stage (one stage when given ``[B, H, W, J]``),
    checked against ``targets [B, H, W, J]``."""
    stages = heatmaps if heatmaps.ndim == 5 else heatmaps[None]
    if stages.shape[1:] != targets.shape:
        raise ValueError(
            f"heatmaps {heatmaps.shape} do not match targets {targets.shape} "
            "([B, H, W, J] or [S, B, H, W, J])"
        )
    return stages


def heatmap_loss(
    *, heatmaps: jnp.ndarray, targets: jnp.ndarray, visible: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Eq. 3, ``||f_H(x) - H*||^2`` per pixel of the visible joints' maps, summed over stages.

    Args:
      heatmaps: [B, H, W, 21] predicted maps, or [S, B, H, W, 21] every CPM stage
        (intermediate supervision: the S stage losses are added).
      targets: [B, H, W, 21] ground-truth maps (one Gaussian per joint).
      visible: [B, 21] or None (all visible); invisible joints' maps are excluded.
    Returns:
      Sum over stages of the mean squared error over the visible maps' pixels.
    """
    stages = _stages(heatmaps, targets)
    b, _, _, j = targets.shape
    mask = jnp.ones((b, j)) if visible is None else visible
    mask = mask.astype(stages.dtype)[:, None, None, :]  # [B, 1, 1, J]
    per_stage = jax.vmap(lambda h: _masked_mean(jnp.square(h - targets), mask))(stages)
    return jnp.sum(per_stage)


def heatmap_ce_loss(
    *, heatmaps: jnp.ndarray, targets: jnp.ndarray, visible: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Eq. 3 for maps read as logits: each visible joint's spatial softmax against its target.

    Not the paper's form (``heatmap_loss`` is): each map is a distribution over the cells,
    ``softmax`` over H x W, and the loss is its cross-entropy with the Gaussian target
    normalised to sum 1 (nats, minimum the target's entropy). Unlike the squared error, whose
    sparse targets leave a wide plateau at all-zero maps, its gradient ``softmax - target``
    is large from the first step.

    Args:
      heatmaps: [B, H, W, 21] or [S, B, H, W, 21] logits (every CPM stage: summed).
      targets: [B, H, W, 21] ground-truth Gaussian maps (any positive scale).
      visible: [B, 21] or None (all visible); other joints (and all-zero targets) add nothing.
    Returns:
      Sum over stages of the mean cross-entropy over the visible joints.
    """
    stages = _stages(heatmaps, targets)
    b, h, w, j = targets.shape
    total = jnp.sum(targets, axis=(1, 2))  # [B, J]
    mask = (jnp.ones((b, j)) if visible is None else visible.astype(targets.dtype)) * (total > 0)
    target = targets / jnp.maximum(total, 1e-12)[:, None, None, :]

    def one(logits):
        log_prob = jax.nn.log_softmax(logits.reshape(b, h * w, j), axis=1).reshape(logits.shape)
        return _masked_mean(-jnp.sum(target * log_prob, axis=(1, 2)), mask)

    return jnp.sum(jax.vmap(one)(stages))


# How the CPM's maps are read and trained (``config.model.heatmap_form``): 'gaussian' maps
# regress Eq. 3's Gaussians (heatmap_loss; soft arg-max sharpness cpm.DEFAULT_BETA),
# 'logits' maps are spatial logits (heatmap_ce_loss; soft arg-max = their expectation).
HEATMAP_FORMS = {"gaussian": heatmap_loss, "logits": heatmap_ce_loss}


# ---------------------------------------------------------------------------
# 2D joints: Eq. 6 and the projection term


def joints2d_loss(
    *,
    joints2d_pred: jnp.ndarray,
    joints2d_true: jnp.ndarray,
    visible: jnp.ndarray | None = None,
    crop_size: float,
) -> jnp.ndarray:
    """Mean squared distance of visible 2D joints, in units of the crop's side.

    Args:
      joints2d_pred: [B, 21, 2] crop pixels.
      joints2d_true: [B, 21, 2] crop pixels.
      visible: [B, 21] or None (all visible).
      crop_size: side of the crop in pixels.
    Returns:
      ``mean over visible joints of ||(pred - true) / crop_size||^2`` (0 if none visible).
    """
    sq = jnp.sum(jnp.square((joints2d_pred - joints2d_true) / crop_size), axis=-1)  # [B, 21]
    return _masked_mean(sq, _joint_mask(visible, joints2d_pred))


def refiner_loss(
    *,
    joints2d_iters: jnp.ndarray,
    joints2d_true: jnp.ndarray,
    visible: jnp.ndarray | None = None,
    crop_size: float,
) -> jnp.ndarray:
    """Eq. 6's ``L_R = sum_t ||j2D(t) - j2D*||^2``: :func:`joints2d_loss` summed over iterations.

    Args:
      joints2d_iters: [T, B, 21, 2] the refiner's outputs j2D(1) .. j2D(T), crop pixels
        (j2D(0) is the CPM's and is supervised by :func:`heatmap_loss`).
      joints2d_true: [B, 21, 2] crop pixels.
      visible: [B, 21] or None.
      crop_size: side of the crop in pixels.
    """
    per_iter = jax.vmap(
        lambda j: joints2d_loss(
            joints2d_pred=j, joints2d_true=joints2d_true, visible=visible, crop_size=crop_size
        )
    )(joints2d_iters)
    return jnp.sum(per_iter)


# ---------------------------------------------------------------------------
# A pose prior (not in the paper)


def joint_limit_violation(*, pose: jnp.ndarray, model) -> jnp.ndarray:
    """``[B]`` sum of squared violations (radians²) of ``model.joint_limits`` by ``pose [B, 45]``.

    Each joint's axis-angle is expressed in its anatomical frame (``model.joint_frames``:
    flexion, abduction, twist) and compared with its (min, max); 0 inside the limits.
    ``model`` is a ``mano.HandModel`` with ``joint_limits`` (the open hand model has them).
    """
    frames = model.joint_frames.astype(pose.dtype)
    local = jnp.einsum("jab,njb->nja", frames, pose.reshape(pose.shape[0], 15, 3))
    lo, hi = model.joint_limits[..., 0], model.joint_limits[..., 1]
    over = jax.nn.relu(local - hi) + jax.nn.relu(lo - local)
    return jnp.sum(jnp.square(over), axis=(1, 2))


# ---------------------------------------------------------------------------
# Eq. 8: the spatial normalisation and the articulation loss


def box_size(
    *, joints2d: jnp.ndarray, visible: jnp.ndarray | None = None, crop_scale: float = CROP_SCALE
) -> jnp.ndarray:
    """Eq. 8's ``c = crop_scale * max(height, width)`` of the visible 2D joints' tight box
    (``geometry.tight_box``).

    Args:
      joints2d: [B, 21, 2] pixels. visible: [B, 21] or None.
      crop_scale: c over the box's larger side (``config.data.crop_scale``; default its
        default).
    Returns:
      [B] pixels (0 for an example with no visible joint).
    """
    box = geometry.tight_box(joints2d, _joint_mask(visible, joints2d) > 0)
    extent = box[:, 2:] - box[:, :2]
    extent = jnp.where(jnp.isfinite(extent), extent, 0.0)  # [B, 2]
    return crop_scale * jnp.max(extent, axis=-1)


def _scale(root_depth, box_size, focal, min_depth):
    """Per-example ``f / (max(z_r, min_depth) * c)``, shaped [B, 1, 1]."""
    z = jnp.maximum(root_depth, min_depth)
    return (jnp.asarray(focal) / (z * jnp.asarray(box_size)))[:, None, None]


def normalize_joints(
    joints3d: jnp.ndarray,
    *,
    box_size: jnp.ndarray,
    focal: jnp.ndarray,
    root_index: int = skeleton.MIDDLE_MCP,
    min_depth: float = MIN_DEPTH,
) -> jnp.ndarray:
    """Eq. 8's normalisation N: root-relative joints in units of the crop at the root's depth.

    ``N(J) = (J - J_r) * f / (z_r * c)`` on all three axes, J_r the middle MCP (canonical
    joint 9), z_r its depth, f the focal length and c = 1.5 max(h, w) of the hand's tight
    2D box (see :func:`box_size`), f and c in the same pixel units.

    Derivation: a point at the root's depth offset by dx metres projects f dx / z_r
    pixels from the root, i.e. f dx / (z_r c) crop sides; the paper divides x and y by
    c (in those projected units) and z by z_r c / f, which is the same factor f / (z_r c)
    applied to z - z_r. Using it on x, y and z alike keeps the three axes in one unit and
    needs no principal point. Consequences: N does not change when the hand moves in x, y
    at fixed depth, nor when f and c are scaled together (resizing the crop), nor when
    the whole hand is scaled about the camera's centre (the monocular scale ambiguity).

    Args:
      joints3d: [B, 21, 3] camera space (metres, OpenCV axes, z forward).
      box_size: [B] c in pixels (> 0).
      focal: [B] or [] focal length in pixels.
      root_index: the root joint (middle MCP).
      min_depth: z_r is clamped to at least this (metres), so a root at or behind the
        camera gives finite values (with no gradient through z_r) instead of inf/NaN.
    Returns:
      [B, 21, 3] normalised joints; the root is at 0.
    """
    root = joints3d[:, root_index : root_index + 1]  # [B, 1, 3]
    return (joints3d - root) * _scale(root[:, 0, 2], box_size, focal, min_depth)


def denormalize_joints(
    normalized: jnp.ndarray,
    *,
    root: jnp.ndarray,
    box_size: jnp.ndarray,
    focal: jnp.ndarray,
    min_depth: float = MIN_DEPTH,
) -> jnp.ndarray:
    """Inverse of :func:`normalize_joints`: ``J = N * z_r * c / f + J_r``.

    Exact (to float rounding) for the root that :func:`normalize_joints` saw, when its
    depth is at least ``min_depth``. At test time ``root`` is the ground-truth root (the
    evaluation protocol of docs/datasets.md, "Scoring protocols").

    Args:
      normalized: [B, 21, 3] normalised joints.
      root: [B, 3] the root joint in camera space (metres).
      box_size: [B] c in pixels. focal: [B] or [] pixels.
      min_depth: as in :func:`normalize_joints`.
    Returns:
      [B, 21, 3] camera space (metres).
    """
    return normalized / _scale(root[:, 2], box_size, focal, min_depth) + root[:, None]


def articulation_loss(
    *,
    joints3d_pred: jnp.ndarray,
    joints3d_true: jnp.ndarray,
    box_size: jnp.ndarray,
    focal: jnp.ndarray,
    visible: jnp.ndarray | None = None,
    min_depth: float = MIN_DEPTH,
) -> jnp.ndarray:
    """Eq. 8, ``||N(J(m)) - N(j*)||^2``, each skeleton normalised about its own root.

    Being root-relative and scale-free, the term fixes the articulation and the hand's
    apparent size against its depth, not where the hand is in the image.

    Args:
      joints3d_pred: [B, 21, 3] the mesh's joints J(m), camera space (metres).
      joints3d_true: [B, 21, 3] ground truth j*, camera space (metres).
      box_size: [B] c of the true 2D box, pixels. focal: [B] or [] pixels.
      visible: [B, 21] joints with 3D labels, or None (all).
      min_depth: see :func:`normalize_joints`.
    Returns:
      Mean over labelled joints of the squared distance of normalised joints.
    """
    kw = dict(box_size=box_size, focal=focal, min_depth=min_depth)
    diff = normalize_joints(joints3d_pred, **kw) - normalize_joints(joints3d_true, **kw)
    return _masked_mean(jnp.sum(jnp.square(diff), -1), _joint_mask(visible, joints3d_pred))


def _best_rotation(source: jnp.ndarray, target: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """``[B, 3, 3]`` proper rotations R minimising ``sum_j w_j ||R source_j - target_j||^2``
    (Kabsch) of centred ``[B, J, 3]`` point sets with weights ``[B, J]``."""
    cov = jnp.einsum("bj,bjx,bjy->bxy", weights, target, source)
    u, _, vt = jnp.linalg.svd(cov)
    d = jnp.sign(jnp.linalg.det(u) * jnp.linalg.det(vt))
    d = jnp.where(d == 0, 1.0, d)
    return jnp.einsum("bxk,bk,bky->bxy", u, jnp.stack([jnp.ones_like(d)] * 2 + [d], -1), vt)


def aligned_articulation_loss(
    *,
    joints3d_pred: jnp.ndarray,
    joints3d_true: jnp.ndarray,
    box_size: jnp.ndarray,
    focal: jnp.ndarray,
    visible: jnp.ndarray | None = None,
    min_depth: float = MIN_DEPTH,
) -> jnp.ndarray:
    """Eq. 8 after the global rotation that best aligns the two skeletons (not in the paper).

    Both sides are normalised as in :func:`articulation_loss`, centred on their labelled
    joints' mean, and the prediction is turned onto the truth by the best rotation
    (Kabsch, held fixed: no gradient flows through it). What is left is the articulation
    (and the shape) alone, so a wrong global rotation no longer pulls the fingers into
    whatever pose makes up for it; Eq. 8 still trains the rotation.

    Args: as :func:`articulation_loss`. Returns: a scalar (mean squared distance).
    """
    kw = dict(box_size=box_size, focal=focal, min_depth=min_depth)
    mask = _joint_mask(visible, joints3d_pred)
    w = mask / jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1.0)

    def centred(x):
        x = jnp.where(mask[..., None] > 0, normalize_joints(x, **kw), 0.0)
        return x - jnp.einsum("bj,bjx->bx", w, x)[:, None]

    pred, true = centred(joints3d_pred), centred(joints3d_true)
    R = jax.lax.stop_gradient(_best_rotation(pred, true, w))
    diff = jnp.einsum("bxy,bjy->bjx", R, pred) - true
    return _masked_mean(jnp.sum(jnp.square(diff), -1), mask)


# ---------------------------------------------------------------------------
# Eq. 9 and Eq. 12: silhouettes and the hierarchical gate


def shape_loss(
    *, silhouettes: jnp.ndarray, masks: jnp.ndarray, weights: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Eq. 9, ``lambda_Sh ||R(m) - s*||^2`` per example, as a mean over pixels and the batch.

    Args:
      silhouettes: [B, H, W] rendered soft silhouettes in [0, 1].
      masks: [B, H, W] ground-truth masks in [0, 1].
      weights: [B] per-example weights (Eq. 12's gate from :func:`shape_weight`), or
        None for all ones. The mean is over all B examples, so gated-off examples
        count as zeros rather than changing the normaliser.
    """
    per_example = jnp.mean(jnp.square(silhouettes - masks), axis=(1, 2))
    if weights is not None:
        per_example = per_example * weights
    return jnp.mean(per_example)


def shape_weight(
    *,
    joints2d_pred: jnp.ndarray,
    joints2d_true: jnp.ndarray,
    visible: jnp.ndarray | None = None,
    tau: float = DEFAULT_TAU,
) -> jnp.ndarray:
    """Eq. 12's hierarchical gate: 1 where the mean per-joint 2D error is below ``tau``, else 0.

    Args:
      joints2d_pred: [B, 21, 2] projected mesh joints pi(J(m)), crop pixels.
      joints2d_true: [B, 21, 2] crop pixels.
      visible: [B, 21] or None; an example with no visible joint gets 0.
      tau: threshold in crop pixels (default :data:`DEFAULT_TAU`; the paper's is lost).
    Returns:
      [B] of 0.0 / 1.0, without gradient.
    """
    mask = _joint_mask(visible, joints2d_pred)
    dist = jnp.sqrt(jnp.sum(jnp.square(joints2d_pred - joints2d_true), -1) + 1e-12)
    count = jnp.sum(mask, -1)
    mean = jnp.sum(mask * dist, -1) / jnp.maximum(count, 1.0)
    gate = jnp.where((count > 0) & (mean < tau), 1.0, 0.0).astype(joints2d_pred.dtype)
    return jax.lax.stop_gradient(gate)


# ---------------------------------------------------------------------------
# Eqs. 10-11: the Laplacian


@functools.lru_cache(maxsize=16)
def _neighbour_table(faces_bytes: bytes, num_faces: int, num_vertices: int):
    faces = np.frombuffer(faces_bytes, np.int64).reshape(num_faces, 3)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    both = np.concatenate([edges, edges[:, ::-1]])  # each undirected edge, both ways
    order = np.lexsort((both[:, 1], both[:, 0]))
    src, dst = both[order, 0], both[order, 1]
    degree = np.bincount(src, minlength=num_vertices)
    width = max(int(degree.max(initial=0)), 1)
    index = np.zeros((num_vertices, width), np.int32)
    weight = np.zeros((num_vertices, width), np.float32)
    slot = np.arange(len(src)) - np.repeat(np.cumsum(degree) - degree, degree)
    index[src, slot] = dst
    weight[src, slot] = 1.0 / degree[src]
    for a in (index, weight):
        a.setflags(write=False)
    return index, weight


def uniform_neighbours(faces, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's neighbours in a triangle mesh and their uniform (umbrella) weights.

    Built once with NumPy and cached per ``faces``; ``faces`` must be concrete (a NumPy
    array or a non-traced jax array), so inside ``jit`` close over the model's faces
    rather than passing them as a traced argument.

    Args:
      faces: [F, 3] vertex ids.
      num_vertices: V.
    Returns:
      ``(index [V, K] int32, weight [V, K] float32)``: K the largest degree; each row's
      weights are 1/degree on its neighbours and 0 on padding (all 0 for a vertex in
      no face).
    """
    try:
        faces = np.asarray(faces, np.int64)
    except jax.errors.TracerArrayConversionError as e:
        raise TypeError(
            "the Laplacian needs concrete faces to build its neighbour table: pass "
            "np.asarray(model.faces) from outside jit (close over it), not a traced array"
        ) from e
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got {faces.shape}")
    return _neighbour_table(faces.tobytes(), faces.shape[0], int(num_vertices))


def uniform_laplacian(vertices: jnp.ndarray, faces) -> jnp.ndarray:
    """Eq. 11's ``delta(v_i) = v_i - mean of v_i's neighbours``, per vertex.

    Args:
      vertices: [B, V, 3] or [V, 3].
      faces: [F, 3] concrete vertex ids (see :func:`uniform_neighbours`).
    Returns:
      Same shape as ``vertices``; 0 for a vertex in no face.
    """
    index, weight = uniform_neighbours(faces, vertices.shape[-2])
    weight = jnp.asarray(weight, vertices.dtype)
    neighbours = jnp.take(vertices, jnp.asarray(index), axis=-2)  # [..., V, K, 3]
    mean = jnp.einsum("...vkc,vk->...vc", neighbours, weight)
    has_neighbours = (jnp.sum(weight, -1) > 0)[:, None].astype(vertices.dtype)
    return (vertices - mean) * has_neighbours


def laplacian_loss(
    *,
    vertices: jnp.ndarray,
    template: jnp.ndarray | None = None,
    faces,
    mode: str = "delta",
) -> jnp.ndarray:
    """Eqs. 10-11, mean over vertices and batch of a squared uniform Laplacian (metres^2).

    * ``mode='delta'`` (handfit's default): ``||delta(v_i) - delta(t_i)||^2``, the change of
      each vertex's Laplacian from the template's, since a hand at rest is not flat.
      Pass vertices in the model's frame (``params.mesh(...).model_frame.vertices``, or the
      DHPE's ``model_vertices``: before the global rotation, scale and translation): delta turns
      with the surface, so camera-space vertices would be penalised for the hand's rotation.
    * ``mode='plain'`` (the paper's text): ``||delta(v_i)||^2``; ``template`` is ignored.

    Args:
      vertices: [B, V, 3] meshes.
      template: [V, 3] the template (``model.v_template``); needed for 'delta'.
      faces: [F, 3] concrete vertex ids (``model.faces``; see :func:`uniform_neighbours`).
      mode: 'delta' or 'plain'.
    """
    lap = uniform_laplacian(vertices, faces)
    if mode == "delta":
        if template is None:
            raise ValueError("laplacian_loss(mode='delta') needs the template [V, 3]")
        lap = lap - uniform_laplacian(jnp.asarray(template, vertices.dtype), faces)
    elif mode != "plain":
        raise ValueError(f"unknown Laplacian mode {mode!r}; expected 'delta' or 'plain'")
    return jnp.mean(jnp.sum(jnp.square(lap), -1))


# ---------------------------------------------------------------------------
# Eq. 7: the weighted sum


def total_loss(
    *, terms: Mapping[str, jnp.ndarray], weights: Mapping[str, float] | None = None
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Eq. 7: the weighted sum of the given terms, and every term for logging.

    Args:
      terms: scalar terms by name, any subset of :data:`DEFAULT_WEIGHTS`' keys
        ('articulation', 'shape', 'laplacian', 'feature', 'heatmap', 'refiner',
        'projection'); leave a term out to switch it off (the paper's ablations).
      weights: overrides of :data:`DEFAULT_WEIGHTS` (a dict or a ConfigDict); the
        per-example gate of Eq. 12 is not here but in :func:`shape_loss`'s ``weights``.
    Returns:
      ``(total, logs)``: logs maps each given term's name to its unweighted value and
      'total' to the total.
    """
    merged = dict(DEFAULT_WEIGHTS)
    for name, value in dict(weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise KeyError(f"unknown loss weight {name!r}; known: {sorted(DEFAULT_WEIGHTS)}")
        merged[name] = float(value)
    unknown = sorted(set(terms) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise KeyError(f"unknown loss terms {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    logs = {name: jnp.asarray(value) for name, value in terms.items()}
    total = sum((merged[name] * value for name, value in logs.items()), jnp.zeros(()))
    logs["total"] = total
    return total, logs
