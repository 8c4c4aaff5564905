"""The whole DHPE estimator (Eqs. 1, 5, 6): f_F and f_H, then T iterations of f_M and f_R.

One call maps hand crops and their intrinsics to, per iteration t = 1..T, the 63
parameters p(t), the mesh m(p(t)) and its 21 joints in camera space, their
projection into the crop and the refined 2D joints j2D(t); plus the CPM's heat maps,
j2D(0) and the pooled feature f. The soft silhouettes R(m(p(t))) are a separate step,
:meth:`DHPE.silhouettes`, for the callers that need them (the training objective).
The hand model and the renderer (P of Eq. 1) hold no trainable weights: the hand
model is an argument of every call, the renderer is ``handfit.render.soft_silhouette``.

Placement. The 63 numbers are neutral at 0 (``handfit.params``); translation is an
offset from the crop's base point, ``params.crop_base_translation(K, S)`` (:func:`place`).
So p = 0 (with MANO's mean pose, the paper's p(0)) is a hand in the middle of the
crop at about the right size, whatever the crop's intrinsics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from handfit import defaults, mano, params
from handfit import render as rnd
from handfit.models import cpm as cpm_lib
from handfit.models import heads, resnet, segmentation

MODEL, DATA = defaults.section("model"), defaults.section("data")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DHPEOutput:
    """What one DHPE call returns; T iterations, B examples, S CPM stages, V vertices.

    features: [B, D] pooled f_F(x).
    heatmaps: [S, B, hs, hs, 21] every CPM stage's maps (channels last).
    joints2d_cpm: [B, 21, 2] j2D(0), the CPM's joints (crop pixels); with the soft arg-max
      it carries a gradient into f_H (the ``keypoints`` loss), but not into the heads.
    params: [T, B, 63] p(1) .. p(T).
    vertices: [T, B, V, 3] m(p(t)) in camera space (metres).
    model_vertices: [T, B, V, 3] MANO(pose, shape) of p(t), the posed hand in the model's
      frame before the rotation, scale and translation (the Laplacian's input).
    joints3d: [T, B, 21, 3] J(m(p(t))) in camera space (metres).
    joints2d_proj: [T, B, 21, 2] pi(J(m(p(t)))) in crop pixels.
    joints2d: [T, B, 21, 2] j2D(1) .. j2D(T), the refiner's joints (crop pixels); equal to
      j2D(0) at every t when the refiner is off.
    joints2d_spread: [B, 21] how spread out the CPM's last maps are about j2D(0) (crop
      pixels, ``cpm.soft_argmax_with_spread`` at the soft arg-max's sharpness): its uncertainty,
      which weights the joints in test-time refinement (``refine.joints2d_half_weight_spread``).
    mask_logits: [B, S, S] the mask head f_S's logits (from f_H's input map), or None without
      it (``DHPE.mask_head``; ``segmentation.mask_probabilities`` gives P(hand) at crop size).
    """

    features: jax.Array
    heatmaps: jax.Array
    joints2d_cpm: jax.Array
    params: jax.Array
    vertices: jax.Array
    model_vertices: jax.Array
    joints3d: jax.Array
    joints2d_proj: jax.Array
    joints2d: jax.Array
    joints2d_spread: jax.Array
    mask_logits: jax.Array | None = None


def place(p: jax.Array, hand: mano.HandModel, K: jax.Array, crop_size: float) -> params.Placed:
    """The mesh of parameter vectors ``p [B, 63]`` in the camera space of crops with ``K``
    (``params.mesh`` from the crops' ``params.crop_base_translation``)."""
    base = params.crop_base_translation(K, crop_size)
    return params.mesh(params.MeshParams.from_vector(p), hand, base_translation=base)


class DHPE(nn.Module):
    """The paper's estimator: ``HME = f_M o f_E`` (Eq. 1) with the refiner f_R (Eq. 6).

    Attributes:
      backbone: a ResNet constructor (``resnet.ResNet50``, ``resnet.ResNetTiny``): f_F.
      cpm: a CPM constructor (``cpm.CPM``, ``cpm.CPMTiny``): f_H, on the 'stride8' map.
      iterations: T, the steps of Eq. 5 (3 in the paper).
      use_refiner: False drops f_R (ablation): j2D(t) = j2D(0) for every t.
      crop_size: side of the input crops in pixels.
      render_size: side of the silhouettes of :meth:`silhouettes` (0: none are rendered).
      sigma: soft silhouette sharpness in pixels² at ``render_size``.
      render_budget: (face, window) pairs per image for the renderer (None: its default).
      render_tile: side of the renderer's pixel windows (``render.soft_silhouette``'s tile).
      soft_argmax: read j2D(0) with the soft arg-max (sub-pixel; else the hard one). Either
        way no gradient flows back into f_H through j2D(0), as with the paper's arg-max.
      heatmap_form: 'gaussian' (Eq. 3's maps; soft arg-max at ``cpm.DEFAULT_BETA``) or
        'logits' (spatial logits; j2D(0) is the expectation under their softmax).
      cpm_input: the backbone map f_H reads ('stride8' as in the paper; 'stride4' gives
        small crops a finer map).
      mesh_hidden, refiner_hidden: hidden ReLU widths of f_M and f_R (() : the paper's one layer).
      rotation_form: how f_M codes the rotation it updates ('quaternion', the paper, or
        '6d'; ``params.regression_vector``).
      mesh_feature_width: f_M's ``feature_width`` (0: it reads f itself, as in the paper).
      mask_head: add f_S (``segmentation.MaskHead``, beyond the paper), the hand's mask
        predicted from the map f_H reads, for Eq. 13's silhouette term; mask_head_width
        its hidden channels.

    Each default named in ``config.model`` (and ``crop_size``, ``data.image_size``) is
    configs/default.py's (``handfit.defaults``).
    """

    backbone: Callable[..., nn.Module] = resnet.ResNet50
    cpm: Callable[..., nn.Module] = cpm_lib.CPM
    iterations: int = MODEL.iterations
    use_refiner: bool = MODEL.use_refiner
    crop_size: int = DATA.image_size
    render_size: int = MODEL.render_size
    sigma: float = MODEL.sigma
    render_budget: int | None = None
    render_tile: int = MODEL.render_tile
    soft_argmax: bool = True
    heatmap_form: str = MODEL.heatmap_form
    cpm_input: str = MODEL.cpm_input
    mesh_hidden: tuple[int, ...] = MODEL.mesh_hidden
    refiner_hidden: tuple[int, ...] = MODEL.refiner_hidden
    rotation_form: str = MODEL.rotation_form
    mesh_feature_width: int = MODEL.mesh_feature_width
    mask_head: bool = MODEL.mask_head
    mask_head_width: int = MODEL.mask_head_width

    def setup(self):
        size = float(self.crop_size)
        self.f_F = self.backbone(name="backbone")
        self.f_H = self.cpm(name="cpm")
        self.f_M = heads.MeshRegressor(
            crop_size=size,
            hidden=self.mesh_hidden,
            rotation_form=self.rotation_form,
            feature_width=self.mesh_feature_width,
            name="mesh_regressor",
        )
        if self.use_refiner:
            self.f_R = heads.PoseRefiner(
                crop_size=size, hidden=self.refiner_hidden, name="pose_refiner"
            )
        if self.mask_head:
            self.f_S = segmentation.MaskHead(
                width=self.mask_head_width,
                upsample=int(self.cpm_input.removeprefix("stride")),  # to the crop's pixels
                name="mask_head",
            )

    def features(self, images: jax.Array, *, train: bool) -> jax.Array:
        """f_F: pooled features ``[B, D]`` of crops ``[B, S, S, 3]`` in [0, 1] (Eq. 2)."""
        return self.f_F(images, train=train)[0]

    def refine_joints2d(
        self, p: jax.Array, features: jax.Array, joints3d: jax.Array, joints2d: jax.Array
    ) -> jax.Array:
        """f_R (Eq. 6): ``[B, 63], [B, D], [B, 21, 3], [B, 21, 2] -> [B, 21, 2]``."""
        if not self.use_refiner:
            return joints2d
        return self.f_R(p, features, joints3d, joints2d)

    def __call__(
        self,
        images: jax.Array,
        K: jax.Array,
        hand: mano.HandModel,
        *,
        train: bool,
        teacher_joints2d: jax.Array | None = None,
        teacher_mask: jax.Array | None = None,
    ) -> DHPEOutput:
        """Runs the estimator.

        Args:
          images: [B, S, S, 3] crops in [0, 1], S = ``crop_size``.
          K: [B, 3, 3] the crops' intrinsics (pixels of the S x S crop).
          hand: the hand model (a pytree; no trainable weights).
          train: batch statistics (and their update, with ``mutable=['batch_stats']``).
          teacher_joints2d: [B, 21, 2] crop pixels; where ``teacher_mask [B, 21]`` is True
            they replace j2D(0) as f_M's (and f_R's) input (training's teacher forcing,
            ``config.train.teacher_joints2d``). ``joints2d_cpm`` stays the CPM's.
        Returns:
          :class:`DHPEOutput`.
        """
        b, s = images.shape[0], images.shape[1]
        if images.shape[1:] != (self.crop_size, self.crop_size, 3):
            raise ValueError(
                f"DHPE: images must be [B, {self.crop_size}, {self.crop_size}, 3], "
                f"got {images.shape}"
            )
        if K.shape != (b, 3, 3):
            raise ValueError(f"DHPE: K must be [{b}, 3, 3], got {K.shape}")
        f, maps = self.f_F(images, train=train)
        heatmaps = self.f_H(maps[self.cpm_input])
        mask_logits = self.f_S(maps[self.cpm_input]) if self.mask_head else None
        beta = cpm_lib.DEFAULT_BETA if self.heatmap_form == "gaussian" else 1.0
        j2d_cpm, spread = cpm_lib.soft_argmax_with_spread(
            heatmaps[-1], crop_size=float(s), beta=beta
        )
        if not self.soft_argmax:
            j2d_cpm = cpm_lib.hard_argmax(heatmaps[-1], crop_size=float(s))
        # The paper reads j2D(0) as an arg-max, through which no gradient flows: f_H learns
        # from its own losses, not from what the heads would like the joints to be.
        j2d = lax.stop_gradient(j2d_cpm)
        if teacher_joints2d is not None:
            j2d = jnp.where(teacher_mask[..., None], teacher_joints2d, j2d)
        p = params.MeshParams.initial(b, hand, images.dtype).to_vector()
        out = place(p, hand, K, float(s))
        steps = []
        for _ in range(self.iterations):
            p_next = self.f_M(f, j2d, p)  # Eq. 5
            j2d = self.refine_joints2d(p, f, out.joints, j2d)  # Eq. 6
            p = p_next
            out = place(p, hand, K, float(s))
            steps.append((p, out.vertices, out.model_frame.vertices, out.joints, j2d))
        ps, verts, model_verts, joints, j2ds = (jnp.stack(x) for x in zip(*steps))
        camera = rnd.crop_camera(K, s)
        proj = jax.vmap(lambda j: rnd.project(j, camera))(joints)
        return DHPEOutput(
            features=f,
            heatmaps=heatmaps,
            joints2d_cpm=j2d_cpm,
            params=ps,
            vertices=verts,
            model_vertices=model_verts,
            joints3d=joints,
            joints2d_proj=proj,
            joints2d=j2ds,
            joints2d_spread=spread,
            mask_logits=mask_logits,
        )

    def silhouettes(
        self, vertices: jax.Array, K: jax.Array, hand: mano.HandModel
    ) -> rnd.SoftSilhouette:
        """R(m(p(t))) of Eq. 9: the soft silhouettes of meshes ``vertices [T, B, V, 3]``
        (``DHPEOutput.vertices``) seen by the crops' cameras ``K [B, 3, 3]``.

        Uses no variables: call it on the model itself, ``model.silhouettes(...)``.
        Returns ``SoftSilhouette``: silhouette [T, B, R, R] at R = ``render_size``,
        overflow [T, B] int32 (0: nothing dropped; see ``render.soft_silhouette``).
        """
        if not self.render_size:
            raise ValueError("DHPE.silhouettes: render_size is 0; set config.model.render_size")
        t, b = vertices.shape[:2]
        # One call on all T x B meshes (the renderer is faster on a batch than under vmap).
        small = rnd.resize(rnd.crop_camera(K, self.crop_size), self.render_size)
        small = jax.tree.map(lambda x: jnp.tile(x, t), rnd.batch_camera(small, b))
        sil = rnd.soft_silhouette(
            vertices.reshape((-1,) + vertices.shape[2:]),
            hand.faces,
            small,
            sigma=self.sigma,
            tile=self.render_tile,
            budget=self.render_budget,
        )
        return rnd.SoftSilhouette(
            sil.silhouette.reshape((t, b) + sil.silhouette.shape[1:]), sil.overflow.reshape(t, b)
        )


BACKBONES = {"resnet50": resnet.ResNet50, "resnet_tiny": resnet.ResNetTiny}
CPM_INPUTS = ("stride4", "stride8", "stride16")  # backbone maps f_H can read
HEATMAP_FORMS = ("gaussian", "logits")  # what f_H's maps are (see DHPE.heatmap_form)


def from_config(config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None) -> DHPE:
    """The DHPE of ``config.model`` at ``config.data.image_size``: the constructors of f_F
    and f_H, ``crop_size`` and ``render_budget`` (0: None) from the config, every other
    field that ``config.model`` names from its field of that name (``defaults.build``).

    ``bn_axis_name`` makes BatchNorm average its statistics over that mapped axis
    (e.g. 'data' inside ``shard_map``).
    """
    m = config.model
    if m.backbone not in BACKBONES:
        raise ValueError(
            f"config.model.backbone={m.backbone!r}; expected one of {sorted(BACKBONES)}"
        )
    cpm = partial(
        cpm_lib.CPM,
        num_stages=m.cpm_stages,
        width=m.cpm_width,
        stage_kernel=m.cpm_kernel,
        stage_depth=m.cpm_depth,
        heatmap_size=config.data.heatmap_size,
    )
    width = {"num_filters": m.backbone_width} if m.backbone_width else {}
    not_by_name = {
        "backbone": partial(BACKBONES[m.backbone], bn_axis_name=bn_axis_name, **width),
        "cpm": cpm,
        "crop_size": config.data.image_size,
        "render_budget": m.render_budget or None,
    }
    return defaults.build(DHPE, not_by_name, m)


def init(model: DHPE, key: jax.Array, hand: mano.HandModel, batch: int = 1) -> dict[str, Any]:
    """Fresh variables (``params``, ``batch_stats``) of ``model`` for crops of its size."""
    s = model.crop_size
    images = jnp.zeros((batch, s, s, 3), jnp.float32)
    K = jnp.broadcast_to(
        jnp.array([[s, 0.0, s / 2], [0.0, s, s / 2], [0.0, 0.0, 1.0]]), (batch, 3, 3)
    )
    return jax.jit(partial(model.init, train=False))(key, images, K, hand)
