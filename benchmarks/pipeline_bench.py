"""Benchmark of the input pipeline and the synthetic dataset's generation.

Run: python benchmarks/pipeline_bench.py [--quick]

1. Examples per second through ``handfit.data.pipeline`` at 224² from a prepared
   synthetic split (TFDS array_record, ``tfds.data_source``): reading records alone
   (the baseline), evaluation crops, training crops with augmentation (scale,
   rotation, translation, colour jitter), and whole grain batches.
2. Seconds to generate 1,000 synthetic examples (``handfit.data.synthetic.generate``,
   rendering included), against the same number of plain record reads.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import jax
import numpy as np
from absl import flags

from handfit.data import builders, pipeline, synthetic

AUGMENT = dict(scale_jitter=0.1, translate_jitter=0.05, rotation_deg=30.0, color_jitter=0.2)


def rate(fn, n: int) -> float:
    """Calls per second of ``fn(i)`` for i < n (after one warm-up call)."""
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer examples (extrapolated)")
    args = parser.parse_args()
    flags.FLAGS(["pipeline_bench"])  # grain's worker processes read absl flags
    n_data = 64 if args.quick else 256
    n_gen = 128 if args.quick else 1000
    spec = synthetic.SyntheticSpec(num_train=n_data, num_test=4, image_size=256)
    print(f"handfit input pipeline benchmark: jax {jax.__version__}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        builders.prepare("synthetic", tmp, spec=spec)
        prepare_s = time.perf_counter() - t0
        source = builders.data_source("synthetic", "train", tmp, spec=spec)
        rng = np.random.default_rng(0)
        kw = dict(image_size=224, heatmap_size=32)
        rows = [
            ("read record (baseline)", rate(lambda i: source[i % n_data], n_data)),
            (
                "crop, eval",
                rate(lambda i: pipeline.process(source[i % n_data], None, **kw), n_data),
            ),
            (
                "crop + augment, train",
                rate(lambda i: pipeline.process(source[i % n_data], rng, **kw, **AUGMENT), n_data),
            ),
        ]
        batch = 16
        # grain reads ahead in threads (and worker processes): time many batches from a
        # fresh iterator, start-up included, so a filled read-ahead buffer cannot flatter it.
        steps = 4 * n_data // batch
        for workers in (0, 2):
            start = time.perf_counter()
            it = iter(
                pipeline.dataset(
                    source, batch_size=batch, train=True, workers=workers, **kw, **AUGMENT
                )
            )
            for _ in range(steps):
                next(it)
            per_s = steps * batch / (time.perf_counter() - start)
            rows.append((f"grain batches of {batch}, {workers} workers, from start", per_s))
        base = rows[0][1]
        print()
        print("| 224² step | examples/s | baseline / step |")
        print("|---|---:|---:|")
        for name, r in rows:
            print(f"| {name} | {r:.1f} | {base / r:.1f}x |")

        model = None
        gen_spec = synthetic.SyntheticSpec(image_size=128, num_train=n_gen)
        synthetic.generate(gen_spec, "train", 0, 32, model)  # compile
        start = time.perf_counter()
        for s in range(0, n_gen, 32):
            synthetic.generate(gen_spec, "train", s, min(32, n_gen - s), model)
        gen_s = (time.perf_counter() - start) * 1000 / n_gen
        read_s = 1000 / rows[0][1]
        print()
        print("| 1,000 synthetic examples | seconds | / reading 1,000 records |")
        print("|---|---:|---:|")
        ratio = gen_s / read_s
        print(f"| generate at 128² (render, background, labels) | {gen_s:.1f} | {ratio:.0f}x |")
        print(f"| read back at 256² from array_record | {read_s:.2f} | 1x |")
        print(
            f"\n(prepare of {n_data + 4} examples at 256², TFDS encode included: "
            f"{prepare_s:.1f} s; generation measured on {n_gen} examples, scaled to 1,000)"
        )


if __name__ == "__main__":
    main()
