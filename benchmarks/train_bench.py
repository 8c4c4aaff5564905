"""Training step time (tiny, synthetic, full configs), the full step's share outside f_F and f_H,
and the input pipeline's rate against what the step consumes.

    python benchmarks/train_bench.py [--quick] [--full-batch 2] [--steps 5]
    python benchmarks/train_bench.py --parts [--steps 40]

* Step time: the compiled ``handfit.train`` step (forward, backward, Adam) on every
  device there is, median over ``--steps`` steps after a warm-up (compile) step.
  ``full`` runs at a small batch (``--full-batch``): ResNet-50 at 224 x 224 is slow on
  a CPU.
* Outside the backbones: the same step with only f_F (ResNet) and f_H (CPM), a heat-map
  and a feature loss and the same optimiser, timed in the same run; the share of the
  full step spent elsewhere (MANO, the renderer, the dense heads, the losses) is
  ``1 - backbones / step``. Target <= 30 %.
* ``--parts``: the synthetic step with one part of it switched off (the silhouettes, the 2D
  losses, one of the two iterations) or at twice the batch, each as a ratio to the whole
  step timed in the same run: where the step's time goes.
* Input: examples per second of ``handfit.data.pipeline.dataset`` (crop, heat maps,
  augmentation, PNG decoding of the records, in this process: ``workers=0``) against
  the examples per second the step consumes (batch / step time). Target >= 2x. The
  records are synthetic hands rendered at 128 x 128 (``handfit.data.synthetic``),
  stored as PNG like the prepared datasets.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from timing import device_name  # noqa: E402

from handfit import losses, train  # noqa: E402
from handfit.data import pipeline, synthetic  # noqa: E402
from handfit.models import dhpe  # noqa: E402


class PngSource:
    """Records with their image and mask as PNG bytes, decoded on access (as TFDS does)."""

    def __init__(self, records):
        self.records = [
            r | {"image": _png(r["image"]), "mask": _png(r["mask"][..., 0])} for r in records
        ]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        image = np.asarray(Image.open(io.BytesIO(r["image"])))
        return r | {"image": image, "mask": np.asarray(Image.open(io.BytesIO(r["mask"])))}


def _png(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


class Backbones(nn.Module):
    """f_F and f_H alone, built by the same constructors as the DHPE's."""

    backbone: Callable[..., nn.Module]
    cpm: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x, *, train: bool):
        f, maps = self.backbone(name="backbone")(x, train=train)
        return f, self.cpm(name="cpm")(maps["stride8"])


def _backbone_step(config):
    """(step, state) of the backbones-only training step with the run's optimiser."""
    full = dhpe.from_config(config)
    model = Backbones(backbone=full.backbone, cpm=full.cpm)
    s = config.data.image_size
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)), train=False)
    tx = train.optimizer(config)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    def loss_fn(params, stats, batch):
        (f, maps), upd = model.apply(
            {"params": params, "batch_stats": stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
        )
        heat = losses.heatmap_loss(heatmaps=maps, targets=jnp.moveaxis(batch["heatmaps"], 1, -1))
        return heat + jnp.mean(jnp.square(f)), upd["batch_stats"]

    @partial(jax.jit, donate_argnums=0)
    def step(state, batch):
        params, stats, opt = state
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, batch)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), None

    return step, state


def _time_steps(step, state, batch, steps):
    """Median seconds of ``steps`` chained calls after one warm-up call."""
    state, out = step(state, batch)
    jax.block_until_ready((state, out))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, out = step(state, batch)
        jax.block_until_ready((state, out))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _pipeline_rate(source, config, batch, batches):
    """Examples per second of a fresh training pipeline over ``batches`` batches.

    Timed from the iterator's creation: grain reads ahead in threads, so a warm
    iterator would report its buffer, not its rate.
    """
    options = pipeline.options(config.data)
    t0 = time.perf_counter()
    it = iter(pipeline.dataset(source, batch_size=batch, train=True, seed=1, **options))
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t0)


# The synthetic step with one part switched off (or doubled): config field -> value.
PARTS = {
    "the whole step (baseline)": {},
    "no silhouettes (model.render_size=0)": {"model.render_size": 0},
    "no 2D losses (loss.use_2d_losses=False)": {"loss.use_2d_losses": False},
    "one iteration (model.iterations=1)": {"model.iterations": 1},
    "batch 32 (train.batch_size=32)": {"train.batch_size": 32},
}


def _step_time(config, mesh, source, steps: int):
    """(median seconds of ``config``'s compiled training step, the global batch it ran on)."""
    b = config.train.batch_size
    step, _ = train.compiled_steps(config, mesh)
    state = train.create_state(config, mesh)
    options = pipeline.options(config.data)
    host = next(iter(pipeline.dataset(source, batch_size=b, train=True, **options)))
    batch = train._global_batch(host, jax.sharding.NamedSharding(mesh, train.P(train.AXIS)))
    return _time_steps(step, state, batch, steps), batch


def _parts(mesh, steps: int) -> list[str]:
    """Table rows: the synthetic step's median time with each of PARTS, and its ratio."""
    spec = synthetic.SyntheticSpec(num_train=64, image_size=64)
    source = PngSource(synthetic.generate(spec, "train", 0, spec.num_train))
    rows, base = [], None
    for name, fields in PARTS.items():
        config = importlib.import_module("configs.synthetic").get_config()
        for path, value in fields.items():
            section, field = path.split(".")
            config[section][field] = value
        t, _ = _step_time(config, mesh, source, steps)
        base = base or t
        rows.append(f"| {name} | {config.train.batch_size} | {t * 1e3:.1f} | {t / base:.2f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and batches")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--full-batch", type=int, default=2)
    parser.add_argument("--configs", default="tiny,synthetic,full")
    parser.add_argument("--parts", action="store_true", help="where the synthetic step's time goes")
    args = parser.parse_args()
    steps = 2 if args.quick else args.steps
    if args.parts:
        print(f"\ndevice: {device_name()}; median of {steps} steps after a warm-up step\n")
        print("| synthetic step | batch | ms | / whole step |\n|---|---:|---:|---:|")
        print("\n".join(_parts(train.data_mesh(), steps)))
        return
    spec = synthetic.SyntheticSpec(num_train=32, image_size=128)
    source = PngSource(synthetic.generate(spec, "train", 0, spec.num_train))

    rows, mesh = [], train.data_mesh()
    n = mesh.devices.size
    for name in args.configs.split(","):
        config = importlib.import_module(f"configs.{name}").get_config()
        if name == "full":
            config.train.batch_size = args.full_batch
        b = -(-config.train.batch_size // n) * n
        config.train.batch_size = b
        t_step, batch = _step_time(config, mesh, source, steps)
        outside = ""
        if name == "full" or not args.quick:
            bb_step, bb_state = _backbone_step(config)
            bb_batch = {k: batch[k] for k in ("image", "heatmaps")}
            t_bb = _time_steps(bb_step, bb_state, bb_batch, steps)
            outside = f"{100 * (1 - t_bb / t_step):.0f} % (backbones {t_bb * 1e3:.0f} ms)"
        rate = _pipeline_rate(source, config, b, 4 if args.quick else 16)
        consume = b / t_step
        rows.append(
            f"| {name} | {config.data.image_size} | {config.model.backbone} | {b} "
            f"| {t_step * 1e3:.0f} | {1 / t_step:.2f} | {outside or '-'} "
            f"| {rate:.0f} | {consume:.1f} | {rate / consume:.1f}x |"
        )
    print(f"\ndevice: {device_name()}; median of {steps} steps after a warm-up step\n")
    print(
        "| config | image | backbone | batch | step ms | steps/s | outside f_F, f_H "
        "| input ex/s | step ex/s | input / step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
