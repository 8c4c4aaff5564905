"""Defaults for every handfit run; the other configs import this and change a few fields.

    python main.py --config=configs/default.py --mode=hands --workdir=runs/default

Every field can be overridden on the command line, e.g. ``--config.hand.side=left``.
This file is the one place each default is written: the library's settings
(``handfit.refine.RefineConfig``, ``handfit.augment.AugmentConfig``,
``handfit.detect.DetectConfig``, ``handfit.objective.LossOptions``, the DHPE's fields, the
loss weights) take theirs from it (``handfit.defaults``). It imports nothing from handfit.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    # The hand model: a MANO file (MANO_RIGHT.pkl / MANO_LEFT.pkl / .npz), or ''
    # for handfit's open hand model (no licence needed).
    config.hand = ml_collections.ConfigDict()
    config.hand.model_path = ""
    config.hand.side = "right"

    # Data. Prepared datasets (TFDS array_record) live under data.dir; downloaded
    # datasets are read from data.manual_dir (default <data.dir>/downloads/manual).
    config.data = ml_collections.ConfigDict()
    config.data.dir = "data"
    config.data.manual_dir = ""
    config.data.train = ("synthetic",)  # any of rhd, stb, freihand, synthetic
    config.data.test = ("synthetic",)  # any of rhd, stb, dexter_object, freihand, synthetic
    config.data.image_size = 224  # the network's input crop
    config.data.heatmap_size = 32
    config.data.heatmap_sigma = 1.0  # heat-map cells
    config.data.crop_scale = 1.5  # crop side over the joints' tight box (Eq. 8)
    config.data.mirror_left = True  # the hand model is a right hand
    config.data.scale_jitter = 0.1
    config.data.translate_jitter = 0.05  # of the crop side
    config.data.rotation_deg = 30.0
    config.data.color_jitter = 0.2
    config.data.workers = 0  # processes decoding and augmenting (0: in the main process)
    # The synthetic dataset (handfit.data.synthetic.SyntheticSpec).
    config.data.synthetic = ml_collections.ConfigDict()
    config.data.synthetic.num_train = 2000
    config.data.synthetic.num_test = 200
    config.data.synthetic.image_size = 128
    config.data.synthetic.focal = 2.0
    config.data.synthetic.fill = 0.75
    config.data.synthetic.rotation_deg = (180.0, 180.0, 180.0)
    config.data.synthetic.shape_std = 1.0
    # The test split's own ranges (None: as training), e.g. wider to test generalisation.
    config.data.synthetic.test_rotation_deg = ml_collections.config_dict.placeholder(tuple)
    config.data.synthetic.test_shape_std = ml_collections.config_dict.placeholder(float)
    config.data.synthetic.occluder_prob = 0.3
    config.data.synthetic.background_dir = ""
    config.data.synthetic.seed = 0

    # The DHPE networks (handfit.models.dhpe; docs/method.md, Eqs. 1-6).
    config.model = ml_collections.ConfigDict()
    config.model.backbone = "resnet50"  # 'resnet50' or 'resnet_tiny'
    config.model.backbone_width = 0  # the first stage's width (0: the preset's; ResNet-50: 64)
    config.model.pretrained = ""  # a torchvision ResNet-50 .npz (see handfit/models/resnet.py)
    config.model.cpm_stages = 3
    config.model.cpm_width = 128
    config.model.cpm_kernel = 7
    config.model.cpm_depth = 5
    config.model.cpm_input = "stride8"  # the backbone map f_H reads ('stride4' for small crops)
    # 'gaussian': Eq. 3, maps regress Gaussians (squared error); 'logits': each map is a
    # spatial softmax trained with cross-entropy (learns far faster from scratch).
    config.model.heatmap_form = "gaussian"
    # Hidden ReLU widths of f_M and f_R; () is the paper's single dense layer.
    config.model.mesh_hidden = ()
    config.model.refiner_hidden = ()
    # f_M reads the image feature f through Dense(this) + LayerNorm (0: f itself, the paper).
    config.model.mesh_feature_width = 0
    # How f_M codes the rotation it updates (Eq. 5): 'quaternion' (the paper's 4 numbers) or
    # '6d' (two columns of R, continuous over all rotations; learns far faster).
    config.model.rotation_form = "quaternion"
    config.model.iterations = 3  # Eq. 5's steps of f_M (and f_R)
    config.model.use_refiner = True  # ablation: without f_R the CPM's joints are used throughout
    # Not in the paper: the mask head f_S (handfit.models.segmentation), the hand's mask read
    # off f_H's input map and trained on the true masks (loss.weights.mask), which Eq. 13's
    # silhouette term then fits in --mode=eval (refine.silhouette_target 'auto' or 'mask').
    config.model.mask_head = False
    config.model.mask_head_width = 32  # its hidden channels
    config.model.render_size = 56  # side of the rendered silhouettes during training
    config.model.sigma = 1.0  # soft silhouette sharpness, pixels^2 at render_size
    # (face, window) pairs per silhouette in training (0: the renderer's default, 8 per face);
    # fewer is faster, too few drops faces (logged as render_overflow).
    config.model.render_budget = 0
    # Side of the renderer's pixel windows (render.soft_silhouette's tile): a face is evaluated
    # on every pixel of each window its box touches, so small silhouettes want small windows.
    config.model.render_tile = 8

    # Test-time refinement (handfit.refine; docs/method.md, Eq. 13).
    config.refine = ml_collections.ConfigDict()
    config.refine.enabled = True  # used by --mode=eval when a model is evaluated
    config.refine.steps = 50
    # --mode=eval: re-estimate the 2D joints with the network's f_R at every step (Eq. 13);
    # False fits to the network's final j2D(T) instead (steadier with a weakly trained f_R).
    config.refine.reestimate_joints2d = True
    # --mode=eval: > 0 weighs each joint's 2D term by how sharp the CPM's map is, w = h^2 /
    # (h^2 + spread^2), h this fraction of the crop side (handfit.refine.spread_weights);
    # 0 weighs every joint 1 (the paper).
    config.refine.joints2d_half_weight_spread = 0.0
    config.refine.input = ""  # --mode=refine: a folder of images with 2D-keypoint JSONs
    # The fields below are handfit.refine.RefineConfig's; see its docstring for the loss.
    config.refine.optimizer = "adam"  # 'adam' or 'sgd' (the paper's plain gradient descent)
    config.refine.learning_rate = 1.0  # multiplies group_lr
    # Step size per group (pose, shape, quat, scale, trans). Adam: the step in the group's
    # units (rad, beta, quaternion, log-scale, m); for 'sgd' try (100, 500, 2, 10, 0.05).
    config.refine.group_lr = (0.03, 0.05, 0.005, 0.005, 0.001)
    config.refine.momentum = 0.0  # 'sgd' only; 0 is plain gradient descent
    config.refine.final_lr = 1.0  # cosine decay of the step sizes to this fraction
    config.refine.max_update = 0.1  # each update entry is clipped to +-this
    config.refine.joints2d_weight = 1.0  # 2D joints, in units of the image's longer side
    config.refine.silhouette_weight = 0.05  # 0 switches the silhouette term off
    # the silhouette's target: 'auto' (the mask if given), 'initial', 'mask' or 'features'
    config.refine.silhouette_target = "auto"
    config.refine.shape_prior_weight = 1e-5  # ||beta||^2
    config.refine.pose_prior_weight = 1e-3  # squared joint-limit violations (open hand model)
    config.refine.pose_anchor_weight = 0.0  # ||pose - the start's pose||^2, radians^2
    config.refine.laplacian_weight = 0.0  # losses.laplacian_loss of the refined mesh
    config.refine.laplacian_mode = "delta"
    config.refine.freeze = ()  # groups kept fixed, e.g. ('scale', 'trans')
    config.refine.render_size = 112  # longer side of the silhouettes (0: the image's size)
    config.refine.sigma = 1.0  # soft silhouette sharpness, pixels^2 at render_size
    config.refine.tile = 8  # render.soft_silhouette's window side (tile)
    config.refine.budget = 0  # (face, window) pairs per silhouette; 0: the start's need x margin
    config.refine.budget_margin = 1.15  # overflow is reported in RefineResult.overflow
    config.refine.fit_starts = 2  # fit: refine from this many coarse alignments, keep the best
    config.refine.focal = 1.2  # --mode=refine without K: focal length / the image's longer side
    # With 3D evidence (refine.Evidence.world, e.g. the detector's world landmarks): centred
    # joints (metres^2) and unit bone directions (off by default: see benchmarks/README.md).
    config.refine.world_joints_weight = 1.0
    config.refine.world_bones_weight = 0.0

    # The hand detector (handfit.detect: MediaPipe's palm and hand-landmark models; get them
    # with --mode=models). --mode=refine detects the hands of images without keypoints.
    config.detect = ml_collections.ConfigDict()
    config.detect.enabled = True  # False: --mode=refine skips images without keypoints
    config.detect.model_dir = ""  # '' : $HANDFIT_MODELS, else ~/.cache/handfit/models
    config.detect.max_hands = 4  # palm detections kept after NMS, best first
    config.detect.min_score = 0.5  # palm detection score (MediaPipe's min_detection_confidence)
    config.detect.min_presence = 0.5  # hand presence (MediaPipe's min_tracking_confidence)
    config.detect.nms_iou = 0.3
    config.detect.second_pass = True  # landmarks again on the crop the first landmarks give
    config.detect.tiles = 0  # >= 2: palms also in tiles of 1/tiles of the longer side (small hands)
    config.detect.threads = 2  # LiteRT CPU threads

    # Self-supervised data augmentation (handfit.augment; docs/method.md, Sec. 3.5).
    config.augment = ml_collections.ConfigDict()
    config.augment.enabled = False
    config.augment.start_step = 0  # the paper's "first K epochs", in training steps
    config.augment.per_seed = 3  # new examples per predicted (seed) mesh
    config.augment.shape_range = 3.0  # beta ~ U(-range, range) per dimension
    config.augment.rotation_deg = (30.0, 30.0, 30.0)  # about x, y, z
    config.augment.background_dir = ""  # '' for procedural backgrounds
    config.augment.preview_every = 500  # steps between preview PNGs in <workdir>/augment (0: off)
    config.augment.ambient = 0.8  # shading of the re-rendered texture (light at the camera);
    config.augment.diffuse = 0.2  # the seed's colours already hold its own lighting
    config.augment.vertex_tolerance = 0.01  # metres behind the z-buffer a textured vertex may be
    config.augment.joint_tolerance = 0.025  # the same for a generated joint to count as visible

    # --mode=eval (handfit.evaluate): report in <workdir>/eval/; protocols in docs/datasets.md.
    config.eval = ml_collections.ConfigDict()
    config.eval.step = -1  # checkpoint step to evaluate; -1: the latest
    config.eval.batch_size = 16  # fixed batch shape (the last batch is padded)
    config.eval.max_examples = 0  # first N examples of each test set; 0: all
    config.eval.protocol = "zimmermann"  # 3D alignment, handfit.metrics.PROTOCOLS
    config.eval.pck_steps = 20  # thresholds of the 3D PCK over 20-50 mm
    config.eval.num_samples = 4  # overlays (PNG) and meshes (.obj) per test set
    config.eval.workdirs = ()  # several workdirs to compare (empty: just --workdir)

    # Training losses (handfit.objective; each term in docs/method.md). Eq. 7's weights:
    # L = w_art L_Art + w_shape L_Sh + w_lap L_Lap + w_feat L_Feat + w_heatmap L_2D
    #     + w_refiner L_R + w_projection L_proj (handfit.losses.DEFAULT_WEIGHTS reads them).
    config.loss = ml_collections.ConfigDict()
    config.loss.weights = ml_collections.ConfigDict()
    config.loss.weights.articulation = 1.0  # Eq. 8, weight 1 in the paper
    # Eq. 9, the paper's lambda_Sh (the per-example gate of Eq. 12 is applied inside
    # losses.shape_loss); the paper gives no value.
    config.loss.weights.shape = 1.0
    # Eqs. 10-11, lambda_Lap; no value in the paper. The term is in metres^2 per vertex:
    # at 100, 1 mm of noise on every vertex of the open hand costs about 1e-3, a quarter
    # of the articulation term of a 1 cm joint error at 0.5 m (f = 500 px, c = 150 px).
    config.loss.weights.laplacian = 100.0
    config.loss.weights.feature = 1.0  # Eq. 2, weight 1 in the paper
    config.loss.weights.heatmap = 1.0  # Eq. 3, weight 1 in the paper (summed over CPM stages)
    config.loss.weights.refiner = 1.0  # Eq. 6, weight 1 in the paper (summed over iterations)
    # Not in the paper: the CPM's soft-argmax joints j2D(0) against the true 2D joints
    # (joints2d_loss; integral regression, Sun et al. 2018). Eq. 3's squared error on
    # sparse Gaussian maps has a wide plateau at all-zero maps that a small network
    # trained from scratch sits on for thousands of steps; this term moves every joint's
    # map towards its joint from the first step. 0 reproduces Eq. 7.
    config.loss.weights.keypoints = 0.0
    # Not in the paper: projected mesh joints against the true 2D joints
    # (joints2d_loss of pi(J(m))). Eq. 8 is blind to where the hand is in the image
    # (it is root-relative), so a from-scratch run may need this > 0 for Eq. 12's
    # gate to ever open. 0 reproduces Eq. 7.
    config.loss.weights.projection = 0.0
    # Not in the paper: squared joint-limit violations of p(t)'s pose
    # (joint_limit_violation; hand models with limits only). Eq. 8 alone bends fingers
    # beyond what a hand can do to make up for a wrong global rotation. 0 reproduces Eq. 7.
    config.loss.weights.pose_prior = 0.0
    # Not in the paper: Eq. 8 after the best global rotation (aligned_articulation_loss),
    # the articulation alone. 0 reproduces Eq. 7.
    config.loss.weights.aligned_articulation = 0.0
    # Not in the paper: the mask head's binary cross-entropy against the true masks, per
    # cell of its map (examples with a mask; model.mask_head only).
    config.loss.weights.mask = 1.0
    # Eq. 12's gate: mean 2D joint error, crop pixels (the paper's value was lost).
    config.loss.tau = 10.0
    config.loss.constant_shape_weight = False  # ablation: lambda_Sh = 1 for every example
    # Not in the paper: the 2D terms (heat maps, keypoints, projection, refiner, Eq. 12's
    # gate) also on joints the dataset labels in 3D but marks occluded, at their 3D joint
    # projected with K. False (the paper, hand3d) trains 2D on the visible joints only, and
    # f_M then starts from the CPM's untrained guesses for the occluded ones.
    config.loss.supervise_occluded = False
    config.loss.use_2d_losses = True  # ablation: False drops Eqs. 2 and 3 (feature, heat maps)
    config.loss.mesh_iterations = "last"  # mesh terms (Eqs. 8, 9, Lap.) on the 'last' or 'all' p(t)
    config.loss.laplacian_mode = "delta"  # 'delta' (change from the template) or 'plain'

    # The optimiser (optax): Adam(W), warm-up then cosine or step decay, global-norm clipping.
    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "cosine"  # 'cosine' (to end_factor x lr) or 'step' (x step_factor)
    config.optim.warmup_steps = 500
    config.optim.end_factor = 0.01
    config.optim.step_boundaries = (0.6, 0.85)  # 'step': fractions of train.steps
    config.optim.step_factor = 0.1
    config.optim.weight_decay = 0.0  # decoupled (AdamW); 0 is Adam
    config.optim.grad_clip = 1.0  # global norm; 0 for none

    # The training loop (--mode=train).
    config.train = ml_collections.ConfigDict()
    config.train.steps = 100_000
    config.train.batch_size = 32  # global: split over all devices (must divide by their count)
    config.train.log_every = 50  # metrics.jsonl, TensorBoard and the progress bar
    config.train.checkpoint_every = 1000  # and at the end
    config.train.max_to_keep = 3
    config.train.eval_every = 1000  # validation losses on data.test (0: never)
    config.train.eval_batches = 0  # full batches per validation (0: all of them)
    config.train.progress = True  # tqdm progress bar on the console
    config.train.distributed = False  # jax.distributed.initialize() first (several hosts)
    # Not in the paper: teacher forcing of f_M. This share of each batch starts f_M (Eq. 5)
    # from the true 2D joints (where visible) instead of the CPM's, falling linearly to 0 at
    # teacher_until x steps. 0 reproduces the paper.
    config.train.teacher_joints2d = 0.0
    config.train.teacher_until = 0.5

    # --mode=hands: pose the hand model and write meshes and a preview picture.
    config.hands = ml_collections.ConfigDict()
    config.hands.num_random = 4  # random poses (mano.sample_poses) and shapes (N(0, 1))
    config.hands.mesh_format = "obj"
    return config
