"""Forward and forward+backward time of ResNet-50 + CPM (f_F, f_H) at 224 x 224, batch 1 and 8.

    python benchmarks/models_bench.py [--batches 1,8] [--repeats 3]

Baseline in the same run: one 3x3 convolution, 256 -> 256 channels at 56 x 56 (the
shape of ResNet-50's first stage), batch 8. Its GFLOP/s is what this machine's XLA
gets on a plain, large convolution. Every timed call of a network is paired with a
call of the baseline right after it, and the table gives the median network time
and the median ratio of the network's GFLOP/s to the baseline's ("of conv"): how well
the network uses the CPU, robust to other processes on the shared machine. FLOPs are
XLA's estimates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import device_name, flops, median_seconds  # noqa: E402

from handfit.models import cpm, resnet  # noqa: E402


class Backbones(nn.Module):
    """f_F and f_H as the DHPE runs them: the CPM on ResNet-50's stride-8 feature."""

    with_cpm: bool = True
    with_resnet: bool = True

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.with_resnet:
            f, feats = resnet.ResNet50(name="resnet")(x, train=train)
            x = feats["stride8"]
        else:
            f = jnp.zeros((x.shape[0], 1))
        maps = cpm.CPM(name="cpm")(x) if self.with_cpm else jnp.zeros((1,))
        return f, maps


def _paired(fn, args, base, base_args, repeats):
    """Median seconds of ``fn(*args)`` and median of (base seconds / fn seconds), paired."""
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(base(*base_args))
    times, ratios = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t1 = time.perf_counter()
        jax.block_until_ready(base(*base_args))
        t2 = time.perf_counter()
        times.append(t1 - t0)
        ratios.append((t2 - t1) / (t1 - t0))
    return float(np.median(times)), float(np.median(ratios))


def _baseline():
    conv = nn.Conv(256, (3, 3), padding="SAME", use_bias=False)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 56, 56, 256))
    params = conv.init(jax.random.PRNGKey(1), x)
    fn = jax.jit(conv.apply)
    return fn, (params, x), flops(fn, params, x)


def _row(model, x, base, repeats):
    """(fwd s, fwd+bwd s, fwd FLOP, fwd+bwd FLOP, fwd rate / base rate, bwd rate / base rate)."""
    base_fn, base_args, base_flops = base
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})

    def loss(params, x):
        (f, maps), _ = model.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.mean(f**2) + jnp.mean(maps**2)

    fwd = jax.jit(lambda p, x: model.apply({"params": p, "batch_stats": stats}, x, train=False))
    bwd = jax.jit(jax.grad(loss))
    out = []
    for fn in (fwd, bwd):
        t, r = _paired(fn, (params, x), base_fn, base_args, repeats)
        out.append((t, flops(fn, params, x), r))
    (t_f, fl_f, r_f), (t_b, fl_b, r_b) = out
    return t_f, t_b, fl_f, fl_b, fl_f / base_flops * r_f, fl_b / base_flops * r_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = _baseline()
    t = median_seconds(base[0], *base[1], repeats=args.repeats)
    print(
        f"device: {device_name()}; baseline 3x3 conv 256->256 at 56^2, batch 8: "
        f"{1e3 * t:.0f} ms, {base[2] / t / 1e9:.1f} GFLOP/s"
    )
    print()
    print(
        "| network | batch | fwd ms | fwd+bwd ms | fwd GFLOP | fwd+bwd GFLOP "
        "| fwd GFLOP/s of conv | fwd+bwd GFLOP/s of conv |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    nets = {
        "ResNet-50": (Backbones(with_cpm=False), 3),
        "CPM (3 stages) on 28^2x512": (Backbones(with_resnet=False), 512),
        "ResNet-50 + CPM": (Backbones(), 3),
    }
    for batch in [int(b) for b in args.batches.split(",")]:
        for name, (model, channels) in nets.items():
            side = 224 if channels == 3 else 28
            x = jax.random.uniform(jax.random.PRNGKey(2), (batch, side, side, channels))
            t_f, t_b, fl_f, fl_b, r_f, r_b = _row(model, x, base, args.repeats)
            print(
                f"| {name} | {batch} | {1e3 * t_f:.0f} | {1e3 * t_b:.0f} | {fl_f / 1e9:.1f} "
                f"| {fl_b / 1e9:.1f} | {r_f:.2f} | {r_b:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
