"""Benchmark of handfit.render: soft silhouettes (fast vs dense), rasteriser, shading.

Run: python benchmarks/render_bench.py [--quick]

Times are the minimum over repeats (the machines are shared and noisy); ratios compare
runs made in the same process. Peak memory is XLA's buffer assignment for the compiled
function (arguments + outputs + temporaries), from ``compiled.memory_analysis()``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from handfit import render

SIGMA = 1.0  # pixels²


def posed_hands(n: int, seed: int = 0):
    """n posed open hands centred at z = 0.45 m: (vertices [n, V, 3], faces [F, 3], name)."""
    try:
        from handfit import mano

        model = mano.open_hand()
        k_pose, k_rot = jax.random.split(jax.random.PRNGKey(seed))
        pose = mano.sample_poses(k_pose, model, n)
        rot = 0.4 * jax.random.normal(k_rot, (n, 3))
        verts = np.asarray(mano.forward(model, pose, jnp.zeros((n, 10)), rot).vertices)
        faces = np.asarray(model.faces, np.int32)
        name = "open hand (handfit.mano)"
    except ImportError:  # before the hand model exists: a hand-sized icosphere
        import trimesh

        m = trimesh.creation.icosphere(subdivisions=3, radius=0.08)
        verts = np.repeat(np.asarray(m.vertices)[None] * [0.6, 1.2, 0.3], n, 0)
        faces = np.asarray(m.faces, np.int32)
        name = "substitute (squashed icosphere)"
    lo, hi = verts.min(1, keepdims=True), verts.max(1, keepdims=True)
    verts = verts - 0.5 * (lo + hi) + np.array([0.0, 0.0, 0.45])
    return jnp.asarray(verts, jnp.float32), jnp.asarray(faces), name


def camera(size: int) -> render.Camera:
    f = 500.0 * size / 224
    return render.perspective_camera(f, f, size / 2, size / 2, size, size)


def timeit(fn, *args, reps: int, budget_s: float = 20.0) -> float:
    """Minimum wall time in ms over reps (fewer if they exceed budget_s); fn is compiled."""
    jax.block_until_ready(fn(*args))
    best, spent = math.inf, 0.0
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best * 1e3


def peak_mb(fn, *args) -> float:
    m = fn.lower(*args).compile().memory_analysis()
    if m is None:
        return float("nan")
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return total / 2**20


def tuned_budget(verts, faces, cam) -> int:
    need = int(jnp.max(render.candidate_count(verts, faces, cam, sigma=SIGMA)))
    return int(math.ceil(need * 1.15 / 256) * 256)


def soft_fns(faces, cam, budget, dense: bool):
    if dense:

        def sil(v):
            return render.soft_silhouette_dense(v, faces, cam, sigma=SIGMA)
    else:

        def sil(v):
            return render.soft_silhouette(v, faces, cam, sigma=SIGMA, budget=budget).silhouette

    def loss(v, target):
        return jnp.sum((sil(v) - target) ** 2)

    return jax.jit(sil), jax.jit(jax.value_and_grad(loss))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no dense 224²")
    args = parser.parse_args()
    reps = 5 if args.quick else 20
    verts16, faces, name = posed_hands(16)
    print(f"handfit.render benchmark: {name}, {faces.shape[0]} faces, sigma = {SIGMA} px²,")
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.machine()}")
    print()
    print(
        "| res | B | budget | fast fwd | fast f+b | fast MB | dense fwd | dense f+b | dense MB "
        "| dense/fast fwd | dense/fast f+b | max abs diff | grad cos |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (64, 112, 224):
        cam = camera(size)
        tuned = tuned_budget(verts16, faces, cam)
        default = render.soft.default_budget(faces.shape[0], size, size, 8)
        dense_b1 = None
        for batch in (1, 16):
            v = verts16[:batch]
            target = jnp.roll(
                render.soft_silhouette(v, faces, cam, sigma=SIGMA, budget=tuned).silhouette, 2, 2
            )
            # Dense at batch 16 would take pixels x faces x 16 memory: measured at batch 1 only
            # and scaled by 16 (marked *). At 224² dense gets few repeats.
            run_dense = batch == 1 and not (args.quick and size == 224)
            if run_dense:
                d_fwd, d_fb = soft_fns(faces, cam, None, dense=True)
                d_reps = 2 if size == 224 else reps
                td_f = timeit(d_fwd, v, reps=d_reps)
                td_fb = timeit(d_fb, v, target, reps=d_reps)
                d_mb = peak_mb(d_fb, v, target)
                dense_val = d_fwd(v)
                g_dense = d_fb(v, target)[1]
                dense_b1 = (td_f, td_fb, d_mb)
            for budget, tag in ((tuned, ""), (default, "d")):
                f_fwd, f_fb = soft_fns(faces, cam, budget, dense=False)
                tf_f = timeit(f_fwd, v, reps=reps)
                tf_fb = timeit(f_fb, v, target, reps=reps)
                f_mb = peak_mb(f_fb, v, target)
                diff = cos = float("nan")
                if run_dense:
                    diff = float(jnp.max(jnp.abs(f_fwd(v) - dense_val)))
                    g = np.ravel(f_fb(v, target)[1])
                    gd = np.ravel(g_dense)
                    cos = float(g @ gd / (np.linalg.norm(g) * np.linalg.norm(gd)))
                if dense_b1 is None:
                    dense_cols = "- | - | - | - | -"
                else:
                    scale = 1 if batch == 1 else batch
                    mark = "" if batch == 1 else "*"
                    td_f, td_fb, d_mb = (x * scale for x in dense_b1)
                    dense_cols = (
                        f"{td_f:.1f}{mark} | {td_fb:.1f}{mark} | {d_mb:.0f}{mark} | "
                        f"{td_f / tf_f:.0f}x | {td_fb / tf_fb:.0f}x"
                    )
                print(
                    f"| {size}² | {batch} | {budget}{tag} | {tf_f:.2f} | {tf_fb:.2f} | "
                    f"{f_mb:.1f} | {dense_cols} | {diff:.1e} | {cos:.5f} |",
                    flush=True,
                )
    print()
    print("times in ms (minimum over repeats); MB: XLA peak buffers of forward+backward;")
    print("budget: (face, window) pairs per image, tuned = 1.15 x the most any of the 16 hands")
    print("needs, rounded up to 256; 'd' = default_budget. *: dense at batch 16 = 16 x batch 1")
    print("(not run: its memory is pixels x faces x batch). x: dense time / fast time.")
    print()
    print("| res | B | rasterize ms | shade ms | shade fwd+bwd ms |")
    print("|---:|---:|---:|---:|---:|")
    colors = jnp.full((verts16.shape[1], 3), 0.7)
    for size in (112, 224):
        cam = camera(size)
        for batch in (1, 16):
            v = verts16[:batch]
            ras = jax.jit(lambda v, cam=cam: render.rasterize(v, faces, cam).mask)
            shade = jax.jit(lambda v, cam=cam: render.shade(v, faces, colors, cam).rgba)
            shade_fb = jax.jit(
                jax.grad(lambda v, cam=cam: jnp.sum(render.shade(v, faces, colors, cam).rgba))
            )
            print(
                f"| {size}² | {batch} | {timeit(ras, v, reps=reps):.2f} | "
                f"{timeit(shade, v, reps=reps):.2f} | {timeit(shade_fb, v, reps=reps):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
