"""Benchmark of handfit.refine: accuracy from perturbed starts, and speed of the 50 steps.

Run: python benchmarks/refine_bench.py [--quick]

Accuracy: open hands with known parameters (random poses, shapes ~ N(0, 1), rotations up
to 60/60/180 degrees about x/y/z) rendered at 224² (hard masks); starts perturbed by
N(0, 0.3 rad) on each pose entry, N(0, 1) on shape and a 20-degree rotation about a random
axis; refined with the default config to the exact (or 3 px noisy) 2D joints, with or
without the mask. Errors are medians over the hands: 2D against the exact joints, PA-MPJPE
(``metrics.align(..., 'procrustes')``) against the true 3D joints.

Speed: median wall time of one ``refine`` call (all steps in one compiled loop) against a
baseline in the same run: the same steps as a Python loop of ``steps=1`` calls (one
compiled step each; the optimiser state restarts each call, which does not change the
work).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import median_seconds  # noqa: E402

from handfit import geometry, mano, metrics, params, refine, render  # noqa: E402
from handfit.params import MeshParams  # noqa: E402

IDENTITY = jnp.array([1.0, 0.0, 0.0, 0.0])


def problem(model, n: int, size: int = 224, seed: int = 0):
    """(truth, start, exact 2D joints [n, 21, 2], masks [n, size, size], camera)."""
    k = jax.random.split(jax.random.PRNGKey(seed), 7)
    limits = jnp.deg2rad(jnp.array([60.0, 60.0, 180.0]))
    angles = jax.random.uniform(k[2], (n, 3), minval=-1, maxval=1) * limits
    truth = MeshParams(
        pose=mano.sample_poses(k[0], model, n),
        shape=jax.random.normal(k[1], (n, 10)),
        quat=geometry.axis_angle_to_quaternion(angles) - IDENTITY,
        scale=jnp.zeros((n, 1)),
        trans=jnp.zeros((n, 3)),
    )
    f = 1.6 * size
    camera = render.perspective_camera(f, f, size / 2, size / 2, size, size)
    out = params.mesh(truth, model)
    axis = jax.random.normal(k[5], (n, 3))
    axis = axis / jnp.linalg.norm(axis, axis=-1, keepdims=True)
    turn = geometry.axis_angle_to_matrix(axis * jnp.deg2rad(20.0))
    start = truth._replace(
        pose=truth.pose + 0.3 * jax.random.normal(k[3], truth.pose.shape),
        shape=truth.shape + jax.random.normal(k[4], truth.shape.shape),
        quat=geometry.matrix_to_quaternion(turn @ params.rotation(truth)) - IDENTITY,
    )
    joints2d = render.project(out.joints, camera)
    masks = render.rasterize(out.vertices, model.faces, camera).mask
    return truth, start, joints2d, masks, camera, out.joints


def errors(joints3d, joints2d_true, joints3d_true, camera):
    """(median 2D error px, median PA-MPJPE mm)."""
    e2 = jnp.linalg.norm(render.project(joints3d, camera) - joints2d_true, axis=-1).mean(-1)
    aligned, gt = metrics.align(
        np.asarray(joints3d), np.asarray(joints3d_true), protocol="procrustes"
    )
    pa = np.linalg.norm(aligned - gt, axis=-1).mean(-1) * 1000
    return float(np.median(np.asarray(e2))), float(np.median(pa))


def accuracy(model, n: int) -> list[str]:
    truth, start, j2d, masks, camera, j3d = problem(model, n)
    e2_0, pa_0 = errors(params.mesh(start, model).joints, j2d, j3d, camera)
    noise = 3.0 * jax.random.normal(jax.random.PRNGKey(9), j2d.shape)
    rows = []
    for noisy in (False, True):
        for use_mask in (True, False):
            ev = refine.Evidence(
                j2d + noise if noisy else j2d, jnp.ones((n, 21)), masks if use_mask else None
            )
            cfg = refine.RefineConfig() if use_mask else refine.RefineConfig(silhouette_weight=0.0)
            t = time.perf_counter()
            res = jax.block_until_ready(refine.refine(start, ev, model, camera, cfg))
            secs = time.perf_counter() - t
            e2, pa = errors(res.joints3d, j2d, j3d, camera)
            rows.append(
                f"| {'3 px' if noisy else 'exact'} | {'mask' if use_mask else 'off'} | {n} | "
                f"{e2_0:.2f} | **{e2:.2f}** | {pa_0:.1f} | **{pa:.1f}** | {pa_0 / pa:.1f}x | "
                f"{int(np.max(np.asarray(res.overflow)))} | {secs:.1f} |"
            )
            print(rows[-1], flush=True)
    return rows


def python_loop(start, evidence, model, camera, one_step, steps):
    """The baseline: ``steps`` calls of a compiled one-step refinement."""
    p = start
    for _ in range(steps):
        p = refine.refine(p, evidence, model, camera, one_step).params
    return p


def render_steps(verts, faces, camera, budget, sigma, steps):
    """Baseline: ``steps`` forward+backward passes of the silhouette alone (one compiled call)."""

    def body(_, v):
        grad = jax.grad(
            lambda v: jnp.mean(
                render.soft_silhouette(v, faces, camera, sigma=sigma, budget=budget).silhouette
            )
        )(v)
        return v + 1e-9 * grad

    return jax.lax.fori_loop(0, steps, body, verts)


def speed(model, quick: bool) -> list[str]:
    rows = []
    default = refine.RefineConfig().silhouette_weight
    cases = [(1, 112, default), (1, 112, 0.0), (1, 224, default), (32, 112, default)]
    render_fn = jax.jit(render_steps, static_argnames=("budget", "steps"))
    for batch, res_px, sil in cases:
        _, start, j2d, masks, camera, _ = problem(model, batch, seed=1)
        ev = refine.Evidence(j2d, jnp.ones((batch, 21)), masks if sil else None)
        cfg = refine.RefineConfig(render_size=res_px, silhouette_weight=sil)
        base = jnp.asarray(params.BASE_TRANSLATION)  # refine.refine's default base point
        budget = refine.auto_budget(start, model, camera, base, cfg)
        reps = 2 if quick or batch > 1 else 5
        args = (start, ev, model, camera)
        fused = median_seconds(refine.refine, *args, cfg, repeats=reps, min_seconds=0.0)
        looped = sil_only = float("nan")
        if batch == 1:  # the Python loop at batch 32 takes minutes
            one = refine.RefineConfig(
                render_size=res_px, silhouette_weight=sil, steps=1, budget=budget
            )
            looped = median_seconds(
                python_loop, *args, one, cfg.steps, repeats=reps, min_seconds=0.0
            )
        if sil:
            verts = params.mesh(start, model).vertices
            rcam = render.resize(camera, res_px)
            sil_only = median_seconds(
                render_fn,
                verts,
                model.faces,
                rcam,
                budget,
                cfg.sigma,
                cfg.steps,
                repeats=reps,
                min_seconds=0.0,
            )
        rows.append(
            f"| {batch} | {f'{res_px}²' if sil else 'off'} | {budget if sil else '-'} | "
            f"{cfg.steps} | **{fused * 1e3:.0f}** | {batch / fused:.1f} | "
            f"{looped * 1e3:.0f} | {looped / fused:.1f}x | {sil_only * 1e3:.0f} | "
            f"{sil_only / fused:.2f} |"
        )
        print(rows[-1].replace("nanx", "-").replace("nan", "-"), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 hands, fewer repeats")
    ap.add_argument("--n", type=int, default=32, help="hands in the accuracy table")
    args = ap.parse_args()
    model = mano.open_hand()
    n = 8 if args.quick else args.n
    print(
        f"handfit.refine benchmark: {model.name}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}, {platform.machine()}, default RefineConfig "
        f"({refine.RefineConfig().optimizer}, {refine.RefineConfig().steps} steps)\n"
    )
    print(
        "| 2D joints | silhouette | hands | 2D px before | 2D px after | PA-MPJPE mm before "
        "| PA-MPJPE mm after | PA ratio | overflow | s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    accuracy(model, n)
    print(
        "\n| B | silhouettes | budget | steps | refine ms | hands/s | Python loop ms | "
        "loop/refine | silhouette f+b alone ms | share |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    speed(model, args.quick)
    print(
        "\nmedians over hands; 2D error against the exact joints; render at 112² (the "
        "default render_size) from 224² masks; ms: median wall time of one call (50 steps);"
        " Python loop: 50 calls of a jitted 1-step refine; silhouette f+b alone: the same 50"
        " renders and their gradients with nothing else (share: its fraction of refine)."
    )


if __name__ == "__main__":
    main()
