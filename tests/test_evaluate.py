"""Evaluation: the report, metrics that agree with a direct computation, protocols, comparison."""

import json
import os
import zipfile

import fixtures_data as fx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_scorers as ref
from scipy.spatial.transform import Rotation

from configs import default
from handfit import checkpoint, config_check, evaluate, mano, metrics, params, refine, render
from handfit.data import builders, dexter_object, pipeline
from handfit.models import dhpe, segmentation

HAND = mano.open_hand()
NUM_TEST = 5  # batch 4: one full batch and one padded one
NUM_FREIHAND = 3  # FreiHAND evaluation images
STB_SEQUENCES = tuple(f"B{b}{k}" for b in range(1, 7) for k in ("Counting", "Random"))


def tiny_config(data_dir):
    config = default.get_config()
    config.data.dir = str(data_dir)
    config.data.train = ()
    # fixtures in the real formats
    config.data.test = ("synthetic", "stb", "dexter_object", "freihand")
    config.data.image_size = 32
    config.data.heatmap_size = 8
    config.data.synthetic.num_train = NUM_TEST  # same shapes as the test split's
    config.data.synthetic.num_test = NUM_TEST
    config.data.synthetic.image_size = 32
    config.model.backbone = "resnet_tiny"
    config.model.cpm_stages = 1
    config.model.cpm_width = 4
    config.model.cpm_kernel = 3
    config.model.cpm_depth = 1
    config.model.render_size = 0
    config.refine.enabled = True  # Eq. 13 from p(T), with the DHPE's f_R in the loop
    config.refine.steps = 3
    config.refine.silhouette_weight = 0.0  # the wiring is tested here, the renderer elsewhere
    config.eval.batch_size = 4
    config.eval.num_samples = 1
    return config


def perturbed(variables, seed=1):
    """Every weight plus noise (an untrained f_M would leave every hand at p(0))."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + 0.05 * rng.standard_normal(a.shape, np.float32), variables)


def save_checkpoint(workdir, variables):
    mngr = checkpoint.manager(workdir)
    checkpoint.save(mngr, 7, variables, variables)
    mngr.wait_until_finished()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    config = tiny_config(root / "data")
    manual = str(root / "manual")
    rng = np.random.default_rng(0)
    fx.write_stb(manual, rng, sequences=STB_SEQUENCES, n=1)  # test: 2 frames x 2 cameras
    fx.write_dexter(manual, rng, sequences=dexter_object.SEQUENCES, n=1)
    fx.write_freihand(manual, rng, n=1, split="training")
    fx.write_freihand(manual, rng, n=NUM_FREIHAND, split="evaluation")
    config.data.manual_dir = manual
    builders.prepare_config(config)
    model = dhpe.from_config(config)
    variables = dhpe.init(model, jax.random.key(0), HAND)  # untrained: no training needed
    # A second run, an ablation with another network (no f_R; its config.json says so): the
    # comparison must score it with its own model; perturbed, so that the runs differ.
    ablation = config.copy_and_resolve_references()
    ablation.model.use_refiner = False
    other = perturbed(dhpe.init(dhpe.from_config(ablation), jax.random.key(0), HAND))
    runs = {str(root / "run_a"): variables, str(root / "run_b"): other}
    for workdir, v in runs.items():
        save_checkpoint(workdir, v)
    config_check.record(ablation, str(root / "run_b"), 7)
    with open(os.path.join(str(root / "run_a"), "metrics.jsonl"), "w") as f:  # a training log
        for step, loss in ((1, 0.5), (7, 0.1)):
            f.write(json.dumps({"step": step, "total": loss, "heatmap": loss / 10}) + "\n")
        f.write(json.dumps({"step": 7, "val/total": 0.2}) + "\n")
    config.eval.workdirs = tuple(runs)
    report = evaluate.evaluate(config, str(root / "run_a"))
    return config, runs, report, root


def test_report_files(setup):
    _, runs, report, _ = setup
    workdir = next(iter(runs))
    out = os.path.join(workdir, "eval")
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["step"] == 7 and saved["hand_model"] == HAND.name
    synth = saved["datasets"]["synthetic"]
    assert synth["examples"] == NUM_TEST  # the padding of the last batch is dropped
    assert set(synth["pose3d"]) == {"network", "refined", "baseline"}
    assert synth["pose3d"]["network"]["protocol"] == "zimmermann"
    assert 0.0 <= synth["pose3d"]["network"]["auc"] <= 1.0
    for key in ("mesh", "segmentation"):  # synthetic has meshes and masks
        assert set(synth[key]) == {"network", "refined", "baseline"}
    assert synth["mesh"]["network"]["pa_mpvpe_mm"] > 0
    with open(os.path.join(out, "report.md")) as f:
        table = f.read()
    assert HAND.name in table and "zimmermann" in table and "refiner j2D(T)" in table
    assert "| PA-MPJPE mm | rotation ° (in image, in depth) |" in table
    # The training run's learning curves are drawn into the report and linked from it.
    assert os.path.getsize(os.path.join(out, "learning_curves.png")) > 1000
    assert "(learning_curves.png)" in table
    assert {"cpm", "refiner", "refined_target", "baseline_projected"} <= set(synth["pose2d"])
    assert os.path.getsize(os.path.join(out, "pck_synthetic.png")) > 1000
    samples = sorted(os.listdir(os.path.join(out, "samples")))
    assert samples == [
        f"{name}_000_{v}.{ext}"
        for name in ("dexter_object", "freihand", "stb", "synthetic")
        for v in ("network", "refined")
        for ext in ("obj", "png")
    ]
    # Refinement moved the hand (3 steps from p(T)), and no further than a few centimetres.
    moved = synth["pose3d"]["refined"]["epe_mean_mm"] - synth["pose3d"]["network"]["epe_mean_mm"]
    assert 0.0 < abs(moved) < 50.0
    assert "dataset image's pixels" in table
    with open(os.path.join(out, "samples", samples[-4])) as f:
        assert sum(line.startswith("v ") for line in f) == HAND.num_vertices


@pytest.mark.parametrize("dataset", ["synthetic", "stb", "dexter_object"])
def test_baseline_agrees_with_direct_computation(setup, dataset):
    """The mean pose p(0), placed per crop and scored with metrics directly, as in the report.

    STB labels the palm centre as joint 0 (its hands are left ones, mirrored by the
    pipeline); Dexter+Object only fingertips, scored by its own protocol.
    """
    config, runs, report, _ = setup
    source = builders.config_source(config, dataset, train=False)
    options = pipeline.options(config.data)
    batch = next(iter(pipeline.dataset(source, batch_size=len(source), train=False, **options)))
    p0 = params.MeshParams.initial(len(source), HAND).to_vector()
    base = np.array(dhpe.place(p0, HAND, batch["K"], float(config.data.image_size)).joints)
    gt, visible = batch["joints3d"], batch["visible"]
    if dataset == "dexter_object":
        ev3d = metrics.DexterEval(20.0, 50.0, 20)
        ev3d.add(base, np.where(visible[..., None], gt, np.nan))
    else:
        if dataset == "stb":
            assert batch["mirrored"].all()
            base[:, 0] = (base[:, 0] + base[:, 13]) / 2  # the palm centre
        ev3d = metrics.PoseEval3D("zimmermann", 20.0, 50.0, 20)
        ev3d.add(base, gt, visible)
    direct = ev3d.result()
    ev2d = metrics.PoseEval2D()
    camera = render.crop_camera(batch["K"], config.data.image_size)
    ev2d.add(np.asarray(render.project(base, camera)), batch["joints2d"], visible)
    # 2D in the dataset image's pixels (hand3d's eval2d.py): the prediction in the dataset's
    # camera frame (the pipeline only mirrors at evaluation), projected with the image's K.
    records = [source[i] for i in range(len(source))]
    K_image = np.stack([r["K"] for r in records]).astype(np.float64)
    unmirrored = np.where(batch["mirrored"][:, None, None], base * [-1.0, 1.0, 1.0], base)
    truth3d = np.stack([r["joints3d"] for r in records]).astype(np.float64)

    def project(points):
        uvw = np.einsum("bij,bkj->bki", K_image, points)
        with np.errstate(divide="ignore", invalid="ignore"):  # unlabelled joints: not scored
            return uvw[..., :2] / uvw[..., 2:]

    image2d = metrics.PoseEval2D(frame="image")
    image2d.add(project(unmirrored), project(np.nan_to_num(truth3d)), visible)
    # the hand's orientation error, by scipy's weighted Kabsch fit on centred joints
    angles = []
    for b, g, w in zip(base, gt, visible & np.isfinite(gt).all(-1), strict=True):
        centred = [x[w] - np.average(x[w], axis=0) for x in (b, g)]
        angles.append(np.degrees(Rotation.align_vectors(centred[1], centred[0])[0].magnitude()))
    for workdir in runs:
        scored = report["runs"][workdir]["datasets"][dataset]
        assert scored["examples"] == len(source)
        assert scored["pose3d"]["baseline"]["protocol"] == direct["protocol"]
        assert scored["pose3d"]["baseline"]["auc"] == pytest.approx(direct["auc"], abs=1e-6)
        assert scored["pose3d"]["baseline"]["epe_mean_mm"] == pytest.approx(
            direct["epe_mean_mm"], rel=1e-5
        )
        assert scored["pose2d"]["baseline_projected"]["auc"] == pytest.approx(
            ev2d.result()["auc"], abs=1e-6
        )
        assert scored["pose2d_image"]["baseline_projected"]["auc"] == pytest.approx(
            image2d.result()["auc"], abs=1e-6
        )
        rotation = scored["pose3d"]["baseline"]["rotation_error"]
        assert rotation["examples"] == len(source) and rotation["unscored"] == 0
        assert rotation["median_deg"] == pytest.approx(np.median(angles), abs=1e-3)  # float32
        assert ("segmentation" in scored) == (dataset == "synthetic")  # only it has masks


@pytest.mark.parametrize("joint0", ["wrist", "palm"])
def test_protocol_assumes_ground_truth_root_and_bone(joint0):
    rng = np.random.default_rng(0)
    gt = rng.normal(0.0, 0.04, (3, 21, 3)) + np.array([0.0, 0.0, 0.5])
    pred = 1.7 * (gt - gt[:, :1]) + np.array([0.1, -0.2, 0.9])  # wrong scale and root
    if joint0 == "palm":
        gt = evaluate.palm_centre(gt, "stb")  # STB labels the palm centre as joint 0
    K = np.repeat(np.array([[[100.0, 0, 16], [0, 100, 16], [0, 0, 1]]]), 3, 0)
    pred, _ = evaluate.dataset_joints(pred, np.zeros((3, 21, 2)), K, joint0, dataset="stb")
    visible = np.ones((3, 21), bool)
    score = evaluate.Pose3DScore("stb", protocol="zimmermann", steps=20)
    score.add(pred, gt, visible)
    assert score.result()["auc"] == pytest.approx(1.0)
    assert score.result()["epe_mean_mm"] == pytest.approx(0.0, abs=1e-6)
    bent = pred.copy()
    bent[:, 12] += 0.05  # a middle fingertip 5 cm off (x1.7 scale: ~3 cm after alignment)
    wrong = evaluate.Pose3DScore("stb", protocol="zimmermann", steps=20)
    wrong.add(bent, gt, visible)
    assert wrong.result()["auc"] < 1.0


def test_rhd_palm_root_is_scored_as_hand3d_does():
    """RHD with root='palm' against hand3d: its palm (data/BinaryDbReader.py: 0.5 * (wrist +
    middle MCP), RHD order) for truth and prediction, scored as eval3d.py (root-relative,
    ground-truth bone scale) by EvalUtil (utils/general.py) over 20-50 mm.
    """
    rng = np.random.default_rng(2)
    gt = np.stack([fx.make_hand(rng, 0.6) for _ in range(20)]).astype(np.float64)
    pred = gt + rng.normal(0.0, 0.01, gt.shape)  # the network's (wrist-rooted) joints
    gt_rhd = ref.hand3d_palm(fx.raw_from_canonical(gt, fx.RHD_RAW))
    pred_rhd = ref.hand3d_palm(fx.raw_from_canonical(pred, fx.RHD_RAW))
    official = ref.EvalUtil()
    for g, p in zip(gt_rhd * 1000, pred_rhd * 1000):
        ref.hand3d_eval3d_feed(official, g, p, bone=(12, 11))  # RHD: middle MCP 12, PIP 11
    auc = official.get_measures(20.0, 50.0, 20)[2]
    to_canonical = [fx.RHD_RAW.index(name) for name in fx.CANONICAL]
    K = np.repeat(np.array([[[300.0, 0, 160], [0, 300, 160], [0, 0, 1]]]), len(gt), 0)
    ours = {}
    for palm_of in ("rhd", "stb"):  # STB's palm centre uses the ring MCP
        joints, _ = evaluate.dataset_joints(pred, np.zeros((20, 21, 2)), K, "palm", dataset=palm_of)
        score = evaluate.Pose3DScore("rhd", protocol="zimmermann", steps=20)
        score.add(joints, gt_rhd[:, to_canonical], np.ones((20, 21), bool))
        ours[palm_of] = score.result()["auc"]
    assert ours["rhd"] == pytest.approx(auc, abs=1e-12)
    assert ours["stb"] < auc - 0.01
    with pytest.raises(ValueError, match="freihand: joint 0 is labelled as a palm point"):
        evaluate.dataset_joints(pred, np.zeros((20, 21, 2)), K, "palm", dataset="freihand")


def test_freihand_submission_is_scored_by_eval_py_as_in_the_report(setup):
    """pred.json (in pred.zip) fed to FreiHAND's eval.py (re-typed in reference_scorers)
    against the evaluation annotations gives the report's numbers: order, frame and units."""
    _, runs, report, root = setup
    scored = report["runs"][next(iter(runs))]["datasets"]["freihand"]
    submission = scored["submission"]
    assert submission["variant"] == "refined" and submission["complete"]
    with zipfile.ZipFile(submission["zip"]) as z:
        assert z.namelist() == ["pred.json"]
        xyz_pred, verts_pred = json.loads(z.read("pred.json"))
    assert np.shape(xyz_pred) == (NUM_FREIHAND, 21, 3)
    assert np.shape(verts_pred) == (NUM_FREIHAND, HAND.num_vertices, 3)
    annotations = root / "manual" / "FreiHAND_pub_v2"
    xyz, verts = (
        json.loads((annotations / f"evaluation_{name}.json").read_text())
        for name in ("xyz", "verts")
    )
    official = ref.freihand_scores(xyz, verts, xyz_pred, verts_pred)
    mesh = scored["mesh"]["refined"]
    assert mesh["protocol"] == "freihand" and "mesh_errors" in mesh  # 777 vs 778 vertices
    assert mesh["mpjpe_mm"] == pytest.approx(1000 * official["xyz_mean3d"], abs=1e-2)
    assert mesh["pa_mpjpe_mm"] == pytest.approx(1000 * official["xyz_al_mean3d"], abs=1e-2)
    assert mesh["pa_f@15mm"] == pytest.approx(official["f_al_score_15"], abs=0.02)


def test_dexter_uses_fingertips_only():
    rng = np.random.default_rng(1)
    gt = rng.normal(0.0, 0.04, (2, 21, 3))
    pred = 0.5 * gt + 0.3
    pred[:, :4] += 1.0  # non-tip joints are wrong but not scored
    visible = np.zeros((2, 21), bool)
    visible[:, [4, 8, 12, 16, 20]] = True
    score = evaluate.Pose3DScore("dexter_object", protocol="zimmermann", steps=20)
    score.add(pred, gt, visible)
    result = score.result()
    assert result["protocol"] == "dexter_object_tips"
    assert result["auc"] == pytest.approx(1.0)


def test_missing_checkpoint_is_a_clear_error(setup, tmp_path):
    config = setup[0].copy_and_resolve_references()
    config.eval.workdirs = ()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint.*--mode=train"):
        evaluate.evaluate(config, str(tmp_path / "empty"))


def test_a_checkpoint_of_another_model_names_the_differing_fields(setup, tmp_path):
    config, runs, _, _ = setup
    config = config.copy_and_resolve_references()
    config.eval.workdirs = ()
    workdir = tmp_path / "run"
    save_checkpoint(workdir, next(iter(runs.values())))
    trained = config.copy_and_resolve_references()
    trained.model.iterations = 2  # same parameter shapes: used to score the wrong model
    trained.model.cpm_width = 8
    config_check.record(trained, workdir, 7)
    message = r"cannot evaluate .*model.cpm_width 8 -> 4, model.iterations 2 -> 3"
    with pytest.raises(config_check.ConfigError, match=message):
        evaluate.evaluate(config, str(workdir))


def test_a_damaged_checkpoint_is_one_clear_error(setup, tmp_path):
    config, runs, _, _ = setup
    config = config.copy_and_resolve_references()
    config.eval.workdirs = ()
    workdir = tmp_path / "run"
    save_checkpoint(workdir, next(iter(runs.values())))
    folder = workdir / "checkpoints" / "7" / "variables" / "d"
    (data,) = folder.iterdir()
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoints/7 cannot be restored"):
        evaluate.evaluate(config, str(workdir))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("protocol", "hand3d", "config.eval.protocol='hand3d'; expected one of"),
        ("batch_size", 0, "config.eval.batch_size=0; expected an integer >= 1"),
    ],
)
def test_bad_config_is_a_clear_error(setup, field, value, message):
    config = setup[0].copy_and_resolve_references()
    config.eval[field] = value
    with pytest.raises(ValueError, match=message):
        evaluate.evaluate(config, str(setup[3] / "run_a"))


def test_refinement_starts_from_the_network_mesh_and_f_r_sees_its_parameters(setup):
    """evaluate refines p(T) as it is, from the crops' base point: the start is the network's
    mesh, and f_R (the DHPE hooks) gets p(t) and J(m(p(t))) as the network placed them."""
    config, runs, _, _ = setup
    model = dhpe.from_config(config)
    variables = perturbed(next(iter(runs.values())))  # f_R depends on all its inputs
    images = jax.random.uniform(jax.random.key(4), (2, 32, 32, 3))
    K = np.array(
        [[[60.0, 0, 14], [0, 61, 18], [0, 0, 1]], [[90.0, 0, 16], [0, 90, 16], [0, 0, 1]]],
        np.float32,
    )
    p = 0.1 * jax.random.normal(jax.random.key(5), (2, params.NUM_PARAMS))
    mesh = dhpe.place(p, HAND, K, 32.0)
    joints2d = jax.random.uniform(jax.random.key(6), (2, 21, 2)) * 32
    hooks = refine.dhpe_hooks(model, variables, images)
    features = model.apply(variables, images, train=False, method=dhpe.DHPE.features)
    np.testing.assert_allclose(hooks.features(images), features, atol=1e-6)
    # One step with every group frozen: the start's mesh and f_R's first target.
    cfg = refine.RefineConfig(steps=1, silhouette_weight=0.0, freeze=refine.GROUPS)
    res = refine.refine(
        params.MeshParams.from_vector(p),
        refine.Evidence(joints2d, np.ones((2, 21), np.float32)),
        HAND,
        render.crop_camera(K, 32),
        cfg,
        hooks,
        base_translation=params.crop_base_translation(K, 32.0),
    )
    np.testing.assert_allclose(res.vertices, mesh.vertices, atol=1e-6)
    want = model.apply(
        variables, p, features, mesh.joints, joints2d, method=dhpe.DHPE.refine_joints2d
    )
    np.testing.assert_allclose(res.target2d, want, atol=1e-4)


def test_eq13_weighs_the_joints_by_the_cpm_spread_when_asked(setup):
    """config.refine.joints2d_half_weight_spread: Eq. 13's evidence weighs joint j by
    refine.spread_weights of the CPM's spread (h a fraction of the crop side)."""
    config, runs, _, _ = setup
    model = dhpe.from_config(config)
    variables = perturbed(next(iter(runs.values())))
    images = jax.random.uniform(jax.random.key(7), (2, 32, 32, 3))
    K = np.array([[[60.0, 0, 16], [0, 60, 16], [0, 0, 1]]] * 2, np.float32)
    cfg = refine.RefineConfig(steps=3, silhouette_weight=0.0, learning_rate=10.0)
    kw = dict(model=model, hand=HAND, refine_config=cfg, reestimate=False)
    uniform, _ = evaluate._predict(variables, images, K, **kw)
    weighted, _ = evaluate._predict(variables, images, K, half_weight_spread=0.1, **kw)
    out = model.apply(variables, images, K, HAND, train=False)
    evidence = refine.Evidence(
        out.joints2d[-1], refine.spread_weights(out.joints2d_spread, 0.1 * 32)
    )
    want = refine.refine(
        params.MeshParams.from_vector(out.params[-1]),
        evidence,
        HAND,
        render.crop_camera(K, 32),
        cfg,
        base_translation=params.crop_base_translation(K, 32.0),
    )
    np.testing.assert_allclose(weighted["refined"]["joints3d"], want.joints3d, atol=1e-5)
    differ = np.abs(np.asarray(weighted["refined"]["joints3d"] - uniform["refined"]["joints3d"]))
    assert differ.max() > 1e-5


def test_eq13_features_term_without_reestimating_the_joints(setup):
    """silhouette_target='features' with reestimate_joints2d=False: Eq. 13 gets f_F and the
    crops (the feature-similarity term) but keeps j2D(T) as its 2D target."""
    config, runs, _, _ = setup
    model = dhpe.from_config(config)
    variables = perturbed(next(iter(runs.values())))
    images = jax.random.uniform(jax.random.key(8), (2, 32, 32, 3))
    K = np.array([[[60.0, 0, 16], [0, 60, 16], [0, 0, 1]]] * 2, np.float32)
    cfg = refine.RefineConfig(
        steps=3, silhouette_target="features", silhouette_weight=5.0, render_size=32
    )
    pred, joints2d = evaluate._predict(
        variables, images, K, model=model, hand=HAND, refine_config=cfg, reestimate=False
    )
    out = model.apply(variables, images, K, HAND, train=False)
    hooks = refine.dhpe_hooks(model, variables, images)._replace(refine_joints2d=None)
    want = refine.refine(
        params.MeshParams.from_vector(out.params[-1]),
        refine.Evidence(out.joints2d[-1], jnp.ones((2, 21))),
        HAND,
        render.crop_camera(K, 32),
        cfg,
        hooks,
        base_translation=params.crop_base_translation(K, 32.0),
    )
    np.testing.assert_allclose(pred["refined"]["joints3d"], want.joints3d, atol=1e-5)
    np.testing.assert_allclose(joints2d["refined_target"], out.joints2d[-1], atol=1e-5)
    assert "silhouette" in want.terms and float(jnp.abs(want.terms["silhouette"]).max()) > 0


def test_eq13_fits_the_mask_heads_masks_and_the_head_is_scored(setup):
    """With the mask head f_S, Eq. 13's silhouette term fits its P(hand) (no ground truth);
    _predict hands the masks out for scoring, and the table gets a row for them."""
    config, _, _, _ = setup
    config = config.copy_and_resolve_references()
    config.model.mask_head = True
    model = dhpe.from_config(config)
    variables = dhpe.init(model, jax.random.key(3), HAND, batch=2)
    images = jax.random.uniform(jax.random.key(9), (2, 32, 32, 3))
    K = np.array([[[60.0, 0, 16], [0, 60, 16], [0, 0, 1]]] * 2, np.float32)
    cfg = refine.RefineConfig(steps=3, silhouette_weight=1.0, render_size=32)
    pred, _ = evaluate._predict(
        variables, images, K, model=model, hand=HAND, refine_config=cfg, reestimate=False
    )
    out = model.apply(variables, images, K, HAND, train=False)
    head = segmentation.mask_probabilities(out.mask_logits, 32)
    np.testing.assert_allclose(pred["mask_head"]["mask"], head, atol=1e-6)
    start = params.MeshParams.from_vector(out.params[-1])
    kw = dict(base_translation=params.crop_base_translation(K, 32.0))
    camera = render.crop_camera(K, 32)
    want = refine.refine(
        start, refine.Evidence(out.joints2d[-1], jnp.ones((2, 21)), head), HAND, camera, cfg, **kw
    )
    np.testing.assert_allclose(pred["refined"]["joints3d"], want.joints3d, atol=1e-5)
    initial = refine.refine(
        start, refine.Evidence(out.joints2d[-1], jnp.ones((2, 21))), HAND, camera, cfg, **kw
    )
    assert np.abs(np.asarray(initial.joints3d - want.joints3d)).max() > 1e-6
    run = {
        "step": 1,
        "datasets": {
            "synthetic": {
                "examples": 0,
                "pose3d": {},
                "pose2d": {},
                "mask_head": {"iou": 0.625},
            }
        },
    }
    assert "| w | synthetic | 0.625 |" in evaluate._table({"w": run}, HAND.name, "")


def test_restore_trained_gives_the_workdirs_own_network(setup):
    """run_b was trained without f_R (its config.json): restored with that model and its
    checkpoint's variables; a workdir without config.json is an error naming the file."""
    _, runs, _, root = setup
    b = str(root / "run_b")
    trained = evaluate.restore_trained(b)
    assert trained.step == 7 and not trained.model.use_refiner
    assert not trained.config.model.use_refiner
    for got, want in zip(jax.tree.leaves(trained.variables), jax.tree.leaves(runs[b]), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(FileNotFoundError, match=r"run_a/config.json not found: train"):
        evaluate.restore_trained(str(root / "run_a"))


def test_comparison_of_two_workdirs(setup):
    _, runs, report, root = setup
    out = os.path.join(root / "run_a", "eval")
    with open(os.path.join(out, "comparison.md")) as f:
        table = f.read()
    with open(os.path.join(out, "comparison.json")) as f:
        rows = json.load(f)["rows"]
    for workdir in runs:
        assert workdir in table
        assert os.path.exists(os.path.join(workdir, "eval", "metrics.json"))
    rows = [r for r in rows if r["dataset"] == "synthetic"]
    assert len(rows) == 2 * 3  # two runs, three scored outputs
    auc = {(r["workdir"], r["variant"]): r["auc_20_50"] for r in rows}
    a, b = runs
    for w in (a, b):
        assert auc[(w, "network")] == pytest.approx(
            report["runs"][w]["datasets"]["synthetic"]["pose3d"]["network"]["auc"]
        )
    # run_b's checkpoint has no f_R and the config given to evaluate has one: it was
    # restored with the model of its own config.json (else the setup would have failed).
    assert not config_check.saved(b)["model"]["use_refiner"]
    # Same test set, same mean pose: the same baseline; each run's own checkpoint scored.
    assert auc[(a, "baseline")] == auc[(b, "baseline")]
    epe = {(r["workdir"], r["variant"]): r["epe_mean_mm"] for r in rows}
    assert epe[(a, "network")] != pytest.approx(epe[(b, "network")], rel=1e-3)
    assert os.path.getsize(os.path.join(out, "comparison_pck_synthetic.png")) > 1000
