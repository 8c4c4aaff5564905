"""Training: the step learns, shards exactly, resumes exactly, stops on NaN, compiles once."""

import dataclasses
import functools
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import tiny
from handfit import config_check, losses, mano, objective, params, train, viz
from handfit.data import pipeline
from handfit.models import dhpe

SIZE = 32


def fake_records(n, seed):
    """Records in the TFDS features: the open hand posed and projected; a disk mask on joints."""
    rng = np.random.default_rng(seed)
    hand = mano.open_hand()
    p = params.MeshParams(
        pose=jnp.asarray(rng.normal(0, 0.15, (n, 45)), jnp.float32),
        shape=jnp.asarray(rng.normal(0, 1.0, (n, 10)), jnp.float32),
        quat=jnp.asarray(rng.normal(0, 0.3, (n, 4)), jnp.float32),
        scale=jnp.zeros((n, 1)),
        trans=jnp.asarray(rng.normal(0, 0.02, (n, 3)), jnp.float32),
    )
    joints = np.asarray(jax.jit(lambda p: params.mesh(p, hand).joints)(p), np.float64)
    f = 2.0 * SIZE
    K = np.array([[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1]], np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    records = []
    for i in range(n):
        proj = joints[i] @ K.T
        uv = proj[:, :2] / proj[:, 2:]
        d2 = (xx[..., None] - uv[:, 0]) ** 2 + (yy[..., None] - uv[:, 1]) ** 2
        mask = (d2 < (SIZE / 16) ** 2).any(-1)
        image = rng.integers(0, 80, (SIZE, SIZE, 3)).astype(np.uint8)
        image[mask] = (220, 170, 140)
        records.append(
            dict(
                image=image,
                mask=mask[..., None].astype(np.uint8),
                K=K,
                joints3d=joints[i].astype(np.float32),
                joints2d=uv.astype(np.float32),
                visible=np.ones(21, bool),
                side=1,
                sample_id=f"fake/{i}",
            )
        )
    return records


@pytest.fixture(scope="module")
def config():
    c = tiny.get_config()
    c.train.progress = False
    c.train.eval_every = 0  # validation compiles a second program: not in the unit tests
    return c


@pytest.fixture(scope="module")
def records():
    return fake_records(12, seed=0)


@pytest.fixture(scope="module")
def uninterrupted(config, records, tmp_path_factory):
    """4 steps with checkpoints at 2 and 4; the step may be traced only once in this module."""
    workdir = str(tmp_path_factory.mktemp("run"))
    train._compiled.cache_clear()
    original = train._train_step
    train._train_step = chex.assert_max_traces(original, n=1)
    try:
        state = train.train(config, workdir, records)
    finally:
        train._train_step = original
    yield workdir, jax.device_get(state)
    train._compiled.cache_clear()


def _batch(config, records, mesh):
    options = pipeline.options(config.data)
    batch = next(iter(pipeline.dataset(records, batch_size=4, train=True, **options)))
    return batch, train._global_batch(batch, NamedSharding(mesh, P("data")))


def test_run_writes_checkpoints_metrics_and_logs(uninterrupted):
    workdir, state = uninterrupted
    assert int(state.step) == 4
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for k in ("articulation", "shape", "laplacian", "feature", "heatmap", "refiner", "total"):
            assert np.isfinite(r[k]), k
        assert r["grad_norm"] > 0 and r["update_norm"] > 0
        for module in ("f_F", "f_H", "f_M", "f_R"):  # per-module gradient norms
            assert r[f"grad_norm/{module}"] > 0, module
    assert os.path.getsize(os.path.join(workdir, "learning_curves.png")) > 1000
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(f"{workdir}/tensorboard"))


def test_resume_from_checkpoint_ends_with_equal_parameters(config, records, uninterrupted, capsys):
    workdir, want = uninterrupted
    resumed = workdir + "_resumed"
    shutil.copytree(workdir, resumed)
    # The run "died" after its step-2 checkpoint: remove what came later.
    shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))
    os.remove(os.path.join(resumed, "input_state", "4.p0.json"))
    state = jax.device_get(train.train(config, resumed, records))
    assert "resumed from" in capsys.readouterr().out
    assert int(state.step) == 4
    chex.assert_trees_all_equal(state.params, want.params)
    chex.assert_trees_all_equal(state.batch_stats, want.batch_stats)
    with open(os.path.join(resumed, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]


def _logged(step, config, records, mesh, name, steps):
    """``name``'s value after each of ``steps`` steps from a fresh state on one fixed batch."""
    state = train.create_state(config, mesh)
    _, batch = _batch(config, records, mesh)
    values = []
    for _ in range(steps):
        state, metrics = step(state, batch)
        values.append(float(metrics[name]))
    return values


def test_steps_reduce_the_loss_on_a_fixed_batch(config, records, uninterrupted):
    mesh = train.data_mesh()
    step, _ = train.compiled_steps(config, mesh)
    totals = _logged(step, config, records, mesh, "total", 4)
    assert totals[-1] < 0.9 * totals[0], totals


def test_teacher_forcing_falls_to_zero_by_its_step_and_is_logged(config, records):
    shares = [float(train.teacher_fraction(s, 0.8, 4)) for s in (0, 2, 4, 9)]
    np.testing.assert_allclose(shares, [0.8, 0.4, 0, 0], rtol=1e-6)
    assert float(train.teacher_fraction(0, 0.8, 0)) == 0.0
    c = config.copy_and_resolve_references()
    c.train.teacher_joints2d = 1.0
    c.train.teacher_until = 0.5  # of train.steps = 4: taught at steps 0 and 1, then none
    mesh = train.data_mesh()
    step = train.make_train_step(c, mano.from_config(c), mesh)
    assert _logged(step, c, records, mesh, "teacher_fraction", 3) == [1.0, 0.5, 0.0]


def test_two_devices_give_the_one_device_step(config, records, uninterrupted):
    assert jax.device_count() == 2
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.data_mesh(devices)
        step = train.compiled_steps(config, mesh)[0]
        state = train.create_state(config, mesh)
        before = jax.device_get(state.params)
        _, batch = _batch(config, records, mesh)
        state, metrics = step(state, batch)
        results.append((jax.device_get(metrics), jax.device_get(state), before))
    (m1, s1, p1), (m2, s2, _) = results
    for k in ("total", "articulation", "shape", "feature", "heatmap", "refiner", "grad_norm"):
        np.testing.assert_allclose(m2[k], m1[k], rtol=1e-4, err_msg=k)
    # BatchNorm statistics of the global batch, not of each device's half.
    chex.assert_trees_all_close(s2.batch_stats, s1.batch_stats, rtol=1e-4, atol=1e-6)
    # Adam's first update is lr * sign(g) where g is not ~0: the same sign on every weight.
    d1 = jax.tree.map(lambda a, b: np.sign(a - b), s1.params, p1)
    d2 = jax.tree.map(lambda a, b: np.sign(a - b), s2.params, p1)
    same = [np.ravel(a == b) for a, b in zip(jax.tree.leaves(d1), jax.tree.leaves(d2))]
    agree = np.mean(np.concatenate(same))
    assert agree > 0.999, agree


def test_non_finite_loss_stops_naming_the_step_and_term(
    config, records, uninterrupted, tmp_path, monkeypatch
):
    real = pipeline.dataset

    def corrupt(batch):
        batch["joints3d"][1, 5] = np.nan  # a bad 3D label reaches only Eq. 8
        return batch

    monkeypatch.setattr(pipeline, "dataset", lambda *a, **kw: real(*a, **kw).map(corrupt))
    with pytest.raises(train.NonFiniteLossError, match=r"step 1: articulation=nan, total=nan\."):
        train.train(config, str(tmp_path), records)
    assert not os.listdir(tmp_path / "checkpoints")  # nothing non-finite was saved


def _resumable_copy(workdir, name):
    """A copy of the uninterrupted run (checkpoints 2 and 4, config.json)."""
    copy = f"{workdir}_{name}"
    shutil.copytree(workdir, copy)
    return copy


def _no_build(monkeypatch):
    """Makes building a step an error: config checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("built a training step before checking the config")

    monkeypatch.setattr(train, "compiled_steps", refuse)
    monkeypatch.setattr(train, "create_state", refuse)


def test_a_bad_field_stops_before_anything_is_built(config, records, tmp_path, monkeypatch):
    _no_build(monkeypatch)
    bad = config.copy_and_resolve_references()
    bad.train.checkpoint_every = 0  # was a ZeroDivisionError at step 1, after compiling
    with pytest.raises(config_check.ConfigError, match="config.train.checkpoint_every=0"):
        train.train(bad, str(tmp_path), records)


def test_a_resume_that_changes_the_model_is_refused_and_config_json_kept(
    config, records, uninterrupted, monkeypatch
):
    workdir = _resumable_copy(uninterrupted[0], "wider")
    with open(os.path.join(workdir, "config.json")) as f:
        before = f.read()
    _no_build(monkeypatch)
    wider = config.copy_and_resolve_references()
    wider.model.cpm_width = 16
    with pytest.raises(config_check.ConfigError, match=r"cannot resume .*cpm_width 8 -> 16"):
        train.train(wider, workdir, records)
    fewer = config.copy_and_resolve_references()
    fewer.train.steps = 2  # below the newest checkpoint (4): used to exit 0, silently
    with pytest.raises(config_check.ConfigError, match=r"train.steps=2 is below .* \(4\)"):
        train.train(fewer, workdir, records)
    with open(os.path.join(workdir, "config.json")) as f:
        assert f.read() == before  # the record of what the checkpoints hold


def test_non_finite_stop_names_the_last_good_checkpoint(
    config, records, uninterrupted, monkeypatch
):
    workdir = _resumable_copy(uninterrupted[0], "nan")
    with open(os.path.join(workdir, "input_state", "4.p0.json"), "w") as f:
        f.write('{"last_seen_indices": ')  # checkpoint 4 is damaged: resume from 2
    real = pipeline.dataset

    def corrupt(batch):
        batch["joints3d"][1, 5] = np.nan
        return batch

    monkeypatch.setattr(pipeline, "dataset", lambda *a, **kw: real(*a, **kw).map(corrupt))
    last_good = os.path.join(workdir, "checkpoints", "2")
    with pytest.raises(train.NonFiniteLossError, match=f"step 3: .*resume from {last_good},"):
        train.train(config, workdir, records)


def test_two_processes_train_and_resume_as_one_process_with_two_devices(
    config, records, uninterrupted, tmp_path
):
    """Two processes on this machine joined by jax.distributed (gloo, a localhost
    coordinator), one device each: 4 steps; then, checkpoint 4 damaged, a resume from step 2.
    The reference is this process's two devices fed the same global batches: each process's
    shard, in order."""
    with open(tmp_path / "config.json", "w") as f:
        f.write(config.to_json())
    with open(tmp_path / "records.pkl", "wb") as f:
        pickle.dump(records, f)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    worker = [sys.executable, os.path.join(root, "tests", "distributed_worker.py")]
    args = [str(tmp_path / "run"), str(tmp_path / "config.json"), str(tmp_path / "records.pkl")]
    env = os.environ | {
        "PYTHONPATH": root,
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
        "JAX_NUM_PROCESSES": "2",
    }
    procs = [
        subprocess.Popen(
            [*worker, *args, str(tmp_path / "params.npz")],
            env=env | {"JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    assert "checkpoints/4 is damaged" in logs[0] and "at step 2" in logs[0], logs[0]
    assert os.path.isdir(tmp_path / "run" / "checkpoints.damaged" / "4")

    mesh = train.data_mesh()
    step = train.compiled_steps(config, mesh)[0]
    state = train.create_state(config, mesh)
    local = config.train.batch_size // 2
    options = pipeline.options(config.data)
    shards = [
        iter(
            pipeline.dataset(
                records, batch_size=local, train=True, shard_index=i, shard_count=2, **options
            )
        )
        for i in range(2)
    ]
    sharding = NamedSharding(mesh, P("data"))
    for _ in range(config.train.steps):
        halves = [next(s) for s in shards]
        batch = {k: np.concatenate([h[k] for h in halves]) for k in pipeline.BATCH_KEYS}
        state, _ = step(state, train._global_batch(batch, sharding))
    want = jax.tree.leaves(jax.device_get(state.params))
    with np.load(tmp_path / "params.npz") as saved:
        got = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert len(got) == 2 * len(want)
    for name, run in (("first", got[: len(want)]), ("resumed", got[len(want) :])):
        for a, b in zip(run, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_log_line_cut_short_is_dropped_on_resume(tmp_path):
    """A full disk or a kill can leave half a line in metrics.jsonl; the resume drops it."""
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "total": 0.5}\n{"step": 2, "total": 0.4}\n{"step": 3, "to')
    logger = train._Logger(str(tmp_path), start=2, enabled=True)
    logger.close()
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def test_learning_curves_draw_every_loss_term():
    """A term missing from viz.CURVE_PANELS would be logged but never drawn."""
    drawn = {m for _, members in viz.CURVE_PANELS for m in members}
    for term in set(losses.DEFAULT_WEIGHTS) | {"total", "shape_gate", "learning_rate"}:
        assert term in drawn, term


def test_eq8_box_follows_the_configured_crop_scale():
    """Eq. 8's c is data.crop_scale x the joints' box (it was 1.5 whatever the config said)."""
    from configs import tiny

    config = tiny.get_config()
    config.data.crop_scale = 2.0
    assert objective.LossOptions.from_config(config).crop_scale == 2.0
    assert objective.LossOptions().crop_scale == tiny.get_config().data.crop_scale


def test_the_loss_renders_only_the_iterations_it_reads(config, records):
    """With mesh_iterations='last' only p(T)'s mesh is rendered (rendering is most of a CPU
    step) and the loss is unchanged; 'all' given too few silhouettes is an error."""
    c = config.copy_and_resolve_references()
    c.model.iterations = 2
    c.model.render_tile = 4
    hand = mano.from_config(c)
    model, options, faces, _ = train._parts(c, hand)
    assert model.render_tile == 4
    host, _ = _batch(c, records, train.data_mesh())
    batch = {k: jnp.asarray(v) for k, v in host.items()}
    variables = dhpe.init(model, jax.random.PRNGKey(0), hand)
    last = dataclasses.replace(options, mesh_iterations="last")
    every = dataclasses.replace(options, mesh_iterations="all")

    @functools.partial(jax.jit, static_argnums=0)  # compiled: op by op it takes 3x longer
    def forward(opts):
        return train._forward(
            model, variables, batch, hand, train=False, masked_pass=False, options=opts
        )

    out, _, only_last, _ = forward(last)
    _, _, both, _ = forward(every)
    assert only_last.silhouette.shape[0] == 1 and both.silhouette.shape[0] == 2
    np.testing.assert_allclose(only_last.silhouette[0], both.silhouette[1], atol=1e-6)
    assert float(jnp.max(only_last.silhouette)) > 0.5  # the hand is in the picture

    @functools.partial(jax.jit, static_argnums=1)
    def total(sil, opts):
        kw = dict(out=out, batch=batch, hand=hand, faces=faces, options=opts, silhouettes=sil)
        return objective.dhpe_loss(**kw)[0]

    def loss(sil, opts):
        return float(total(sil, opts))

    assert loss(only_last, last) == pytest.approx(loss(both, last), rel=1e-6)
    with pytest.raises(ValueError, match="mesh_iterations='all' needs silhouettes of 2"):
        loss(only_last, every)
