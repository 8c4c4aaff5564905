"""Tests of the CPM f_H and its soft and hard argmax readouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handfit.models import cpm, resnet


def _gaussian_maps(centres, size=32, sigma=1.0):
    """[1, size, size, J] Gaussians at continuous cell coordinates (row, col) per joint."""
    r = np.arange(size) + 0.5
    maps = [
        np.exp(-((r[:, None] - cy) ** 2 + (r[None, :] - cx) ** 2) / (2 * sigma**2))
        for cy, cx in centres
    ]
    return jnp.asarray(np.stack(maps, -1)[None].astype(np.float32))


@pytest.mark.parametrize("stem,shape", [(False, (1, 28, 28, 16)), (True, (1, 64, 64, 3))])
def test_tiny_cpm_shapes_and_stages(stem, shape):
    model = cpm.CPMTiny(stem=stem)
    x = jax.random.uniform(jax.random.PRNGKey(0), shape)
    variables = model.init(jax.random.PRNGKey(1), x)
    assert set(variables) == {"params"}
    maps = model.apply(variables, x)
    assert maps.shape == (2, 1, 32, 32, 21)
    assert np.all(np.isfinite(maps))
    stage_names = {k.split("_")[0] for k in variables["params"] if k.startswith("stage")}
    assert stage_names == {"stage1", "stage2"}
    assert ("stem1_1" in variables["params"]) == stem


def test_stage_count_and_paper_size_output():
    x = jnp.zeros((1, 28, 28, 512))  # ResNet-50's stride-8 feature of a 224 crop
    model = cpm.CPM(num_stages=4, width=8, stage_kernel=3, stage_depth=1)
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x))[0]
    assert out.shape == (4, 1, 32, 32, 21)
    full = jax.eval_shape(cpm.CPM().init, jax.random.PRNGKey(0), x)["params"]
    assert full["stage3_conv1"]["kernel"].shape == (7, 7, 128 + 21, 128)
    assert "stage4_out" not in full and "stage3_out" in full
    with pytest.raises(ValueError, match="at least one stage"):
        cpm.CPM(num_stages=0).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 4)))


def test_hard_argmax_is_exact_cell_centre():
    maps = np.zeros((2, 32, 32, 21), np.float32)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 32, (2, 21)), rng.integers(0, 32, (2, 21))
    for b in range(2):
        for j in range(21):
            maps[b, rows[b, j], cols[b, j], j] = 1.0
    got = cpm.hard_argmax(jnp.asarray(maps), crop_size=224.0)
    want = np.stack([(cols + 0.5) * 7.0, (rows + 0.5) * 7.0], -1)
    np.testing.assert_array_equal(got, want)


def test_soft_argmax_recovers_peaks():
    centred = _gaussian_maps([(10.5, 20.5), (0.5, 31.5), (16.0, 16.0)])  # cell centres/corner
    got = cpm.soft_argmax(centred, crop_size=224.0)[0]
    want = np.array([[20.5, 10.5], [31.5, 0.5], [16.0, 16.0]]) * 7.0
    np.testing.assert_allclose(got, want, atol=0.01 * 7.0)
    off = _gaussian_maps([(10.8, 20.3), (3.2, 29.0)])  # between cells
    got = cpm.soft_argmax(off, crop_size=224.0)[0]
    want = np.array([[20.3, 10.8], [29.0, 3.2]]) * 7.0
    np.testing.assert_allclose(got, want, atol=0.35 * 7.0)  # within a third of a cell


def test_soft_argmax_is_differentiable_and_batched():
    maps = _gaussian_maps([(10.5, 20.5)] * 21)
    maps = jnp.stack([maps[0], maps[0]])  # [2, 32, 32, 21]
    out = cpm.soft_argmax(maps, crop_size=224.0)
    assert out.shape == (2, 21, 2)
    g = jax.grad(lambda m: cpm.soft_argmax(m, crop_size=224.0)[..., 0].sum())(maps)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_soft_argmax_spread_is_the_peaks_spread():
    """A Gaussian of sigma cells has spread sqrt(2) sigma cells; two peaks spread as far as
    they are apart; 7 px cells."""
    for sigma in (1.0, 2.0, 4.0):
        maps = jnp.log(_gaussian_maps([(16.0, 12.0)], sigma=sigma) + 1e-30)  # logits
        got = float(cpm.soft_argmax_with_spread(maps, crop_size=224.0, beta=1.0)[1][0, 0])
        np.testing.assert_allclose(got, np.sqrt(2.0) * sigma * 7.0, rtol=0.02)
    two = jnp.log(_gaussian_maps([(16.0, 8.0)]) + _gaussian_maps([(16.0, 24.0)]) + 1e-30)
    got = float(cpm.soft_argmax_with_spread(two, crop_size=224.0, beta=1.0)[1][0, 0])
    np.testing.assert_allclose(got, np.sqrt(8.0**2 + 2.0) * 7.0, rtol=0.02)  # +-8 cells
    sharp = _gaussian_maps([(10.5, 20.5)] * 2)
    broad = cpm.soft_argmax_with_spread(sharp, crop_size=224.0, beta=1.0)[1]
    narrow = cpm.soft_argmax_with_spread(sharp, crop_size=224.0)[1]  # DEFAULT_BETA sharpens
    assert broad.shape == (1, 2) and np.all(np.asarray(narrow) < 0.5 * np.asarray(broad))


def test_cpm_on_resnet_stride8_feature_at_paper_resolution():
    """f_H as wired in the DHPE: 224 x 224 crop -> ResNet 'stride8' (28 x 28) -> 32 x 32 maps."""
    backbone, head = resnet.ResNetTiny(), cpm.CPMTiny()
    x = jnp.zeros((1, 224, 224, 3))
    bv = backbone.init(jax.random.PRNGKey(0), x, train=False)
    _, feats = backbone.apply(bv, x, train=False)
    assert feats["stride8"].shape[1:3] == (28, 28)
    hv = head.init(jax.random.PRNGKey(1), feats["stride8"])
    maps = head.apply(hv, feats["stride8"])
    assert maps.shape == (2, 1, 32, 32, 21)
    joints = cpm.hard_argmax(maps[-1], crop_size=224.0)
    assert joints.shape == (1, 21, 2) and np.all((joints > 0) & (joints < 224))
