"""Tests of the ResNet backbones and the torchvision weight loader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handfit.models import resnet

KEY = jax.random.PRNGKey(0)


def _tiny(size=64, batch=2):
    model = resnet.ResNetTiny()
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, size, size, 3))
    return model, x, model.init(KEY, x, train=False)


def test_tiny_shapes_and_collections():
    model, x, variables = _tiny()
    assert set(variables) == {"params", "batch_stats"}
    f, feats = model.apply(variables, x, train=False)
    assert f.shape == (2, model.feature_dim) == (2, 128)
    want = {"stem": (16, 4), "stride4": (16, 16), "stride8": (8, 32), "stride16": (4, 64)}
    want["stride32"] = (2, 128)
    for name, (side, ch) in want.items():
        assert feats[name].shape == (2, side, side, ch), name
    np.testing.assert_allclose(f, feats["stride32"].mean((1, 2)), rtol=1e-5)


def test_resnet50_size_without_running_a_network():
    model = resnet.ResNet50()
    x = jnp.zeros((1, 224, 224, 3))
    (f, feats), variables = jax.eval_shape(lambda: model.init_with_output(KEY, x, train=False))
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))
    assert count == 23_508_032  # torchvision resnet50 (25,557,032) without fc (2,049,000)
    assert f.shape == (1, 2048) == (1, model.feature_dim)
    assert feats["stride8"].shape == (1, 28, 28, 512)
    assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 3, 64)


def test_batchnorm_train_uses_and_updates_batch_statistics():
    model, x, variables = _tiny()
    f_eval, _ = model.apply(variables, x, train=False)
    (f_train, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    # Running averages move from their initial (0, 1) towards the batch's statistics.
    old, new = variables["batch_stats"]["bn1"], updates["batch_stats"]["bn1"]
    assert np.abs(new["mean"] - old["mean"]).max() > 1e-4
    assert not np.allclose(f_train, f_eval, atol=1e-4)
    # In eval an example's output does not depend on the rest of the batch; in train it does.
    other = x.at[1].set(jnp.flip(x[1], 0) * 0.5)
    f_eval2, _ = model.apply(variables, other, train=False)
    np.testing.assert_allclose(f_eval2[0], f_eval[0], rtol=1e-5, atol=1e-6)
    (f_train2, _), _ = model.apply(variables, other, train=True, mutable=["batch_stats"])
    assert not np.allclose(f_train2[0], f_train[0], atol=1e-5)


def _torchvision_state(stage_sizes, width, rng):
    """Random arrays under torchvision's resnet key names and layouts, fc included."""
    state = {}

    def conv(name, o, i, k):
        state[f"{name}.weight"] = rng.normal(size=(o, i, k, k)).astype(np.float32) * 0.1

    def bn(name, c):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(size=c).astype(np.float32) * 0.1
        state[f"{name}.running_mean"] = rng.normal(size=c).astype(np.float32) * 0.1
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for s, n in enumerate(stage_sizes):
        w = width * 2**s
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            conv(f"{p}.conv1", w, cin, 1)
            bn(f"{p}.bn1", w)
            conv(f"{p}.conv2", w, w, 3)
            bn(f"{p}.bn2", w)
            conv(f"{p}.conv3", 4 * w, w, 1)
            bn(f"{p}.bn3", 4 * w)
            if b == 0:
                conv(f"{p}.downsample.0", 4 * w, cin, 1)
                bn(f"{p}.downsample.1", 4 * w)
            cin = 4 * w
    state["fc.weight"] = rng.normal(size=(10, cin)).astype(np.float32)
    state["fc.bias"] = np.zeros(10, np.float32)
    return state


def _torch_conv2d(x, w, stride, pad):
    """torch.nn.functional.conv2d in NumPy: x [B, H, W, I], w [O, I, k, k] -> NHWC."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[-1]
    h = (x.shape[1] - k) // stride + 1
    out = np.zeros((x.shape[0], h, h, w.shape[0]), np.float64)
    for r in range(h):
        for c in range(h):
            patch = x[:, r * stride : r * stride + k, c * stride : c * stride + k]  # [B,k,k,I]
            out[:, r, c] = np.einsum("bhwi,oihw->bo", patch, w)
    return out


def test_load_torchvision_npz(tmp_path):
    model, x, variables = _tiny(size=32)
    state = _torchvision_state((1, 1, 1, 1), 4, np.random.default_rng(0))
    path = tmp_path / "resnet_tiny.npz"
    np.savez(path, **state)
    loaded = resnet.load_torchvision_weights(path, jax.eval_shape(lambda: variables))

    p, s = loaded["params"], loaded["batch_stats"]
    np.testing.assert_array_equal(p["conv1"]["kernel"], state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        p["layer2_0"]["downsample_0"]["kernel"],
        state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(p["layer3_0"]["bn2"]["scale"], state["layer3.0.bn2.weight"])
    np.testing.assert_array_equal(
        p["layer1_0"]["downsample_1"]["bias"], state["layer1.0.downsample.1.bias"]
    )
    np.testing.assert_array_equal(s["bn1"]["var"], state["bn1.running_var"])
    np.testing.assert_array_equal(s["layer4_0"]["bn3"]["mean"], state["layer4.0.bn3.running_mean"])
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(variables)

    # conv1 matches torch's conv2d (cross-correlation, stride 2, pad 3) on the standardised image
    _, inter = model.apply(loaded, x, train=False, capture_intermediates=True)
    got = inter["intermediates"]["conv1"]["__call__"][0]
    xs = (np.asarray(x) - resnet.IMAGENET_MEAN) / np.asarray(resnet.IMAGENET_STD)
    want = _torch_conv2d(xs, state["conv1.weight"].astype(np.float64), stride=2, pad=3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    f, _ = model.apply(loaded, x, train=False)
    f_init, _ = model.apply(variables, x, train=False)
    assert np.all(np.isfinite(f)) and not np.allclose(f, f_init)


def test_load_errors_name_the_file_and_key(tmp_path):
    _, _, variables = _tiny(size=32)
    state = _torchvision_state((1, 1, 1, 1), 4, np.random.default_rng(0))

    def write(name, st):
        path = tmp_path / name
        np.savez(path, **st)
        return path

    missing = write(
        "missing.npz", {k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"}
    )
    with pytest.raises(KeyError, match=r"missing\.npz.*layer2\.0\.bn1\.running_var"):
        resnet.load_torchvision_weights(missing, variables)
    bad = dict(state, **{"layer1.0.conv2.weight": np.zeros((4, 4, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"bad\.npz.*layer1\.0\.conv2\.weight"):
        resnet.load_torchvision_weights(write("bad.npz", bad), variables)
    extra = dict(state, **{"layer1.1.conv1.weight": np.zeros((4, 16, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"extra\.npz.*unexpected keys.*layer1\.1\.conv1"):
        resnet.load_torchvision_weights(write("extra.npz", extra), variables)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        resnet.load_torchvision_weights(tmp_path / "nowhere.npz", variables)
