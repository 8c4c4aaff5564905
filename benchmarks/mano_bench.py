"""MANO forward and forward+backward, jitted, at batch 1, 64 and 1024.

    python benchmarks/mano_bench.py

Baseline in the same run: a straightforward NumPy MANO (one joint at a time with
4x4 matrices, vectorised over the batch). Ratios are NumPy time / jitted time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import device_name, flops, median_seconds  # noqa: E402

from handfit import geometry, mano  # noqa: E402


def numpy_forward(model, pose, shape):
    """Vertices [B, V, 3] of MANO in NumPy, the baseline."""
    b = len(pose)
    rots = np.asarray(
        geometry.axis_angle_to_matrix(
            jnp.asarray(np.concatenate([np.zeros((b, 3)), pose], 1).reshape(b, 16, 3))
        )
    )
    v_shaped = model["v_template"] + np.einsum("vcs,bs->bvc", model["shapedirs"], shape)
    joints = np.einsum("jv,bvc->bjc", model["j_regressor"], v_shaped)
    feature = (rots[:, 1:] - np.eye(3)).reshape(b, -1)
    v_posed = v_shaped + np.einsum("vcp,bp->bvc", model["posedirs"], feature)
    world = [None] * 16
    skin = np.zeros((b, 16, 4, 4))
    for j, parent in enumerate(model["parents"]):
        local = np.tile(np.eye(4), (b, 1, 1))
        local[:, :3, :3] = rots[:, j]
        local[:, :3, 3] = joints[:, j] - (joints[:, parent] if parent >= 0 else 0)
        world[j] = local if parent < 0 else world[parent] @ local
        skin[:, j] = world[j]
        skin[:, j, :3, 3] -= np.einsum("bkl,bl->bk", world[j][:, :3, :3], joints[:, j])
    blend = np.einsum("vj,bjkl->bvkl", model["weights"], skin)
    return np.einsum("bvkl,bvl->bvk", blend[..., :3, :3], v_posed) + blend[..., :3, 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,64,1024")
    args = parser.parse_args()
    model = mano.open_hand()
    np_model = dict(
        v_template=np.asarray(model.v_template),
        shapedirs=np.asarray(model.shapedirs),
        posedirs=np.asarray(model.posedirs),
        j_regressor=np.asarray(model.j_regressor),
        weights=np.asarray(model.weights),
        parents=model.parents,
    )

    @jax.jit
    def fwd(pose, shape):
        return mano.forward(model, pose, shape).vertices

    @jax.jit
    def fwd_bwd(pose, shape):
        def loss(p, s):
            out = mano.forward(model, p, s)
            return jnp.sum(out.vertices**2) + jnp.sum(out.joints**2)

        return jax.value_and_grad(loss, argnums=(0, 1))(pose, shape)

    print(f"# MANO ({model.name}, {model.num_vertices} vertices) on {device_name()}")
    print(
        "| batch | NumPy fwd ms | jit fwd ms | NumPy/jit | jit fwd+bwd ms | fwd MFLOP | "
        "fwd+bwd MFLOP | fwd+bwd GFLOP/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        pose = rng.normal(0, 0.3, (batch, 45)).astype(np.float32)
        shape = rng.normal(0, 1, (batch, 10)).astype(np.float32)
        jp, js = jnp.asarray(pose), jnp.asarray(shape)
        np.testing.assert_allclose(
            np.asarray(fwd(jp, js)), numpy_forward(np_model, pose, shape), atol=1e-4
        )
        t_np = median_seconds(numpy_forward, np_model, pose, shape, repeats=5)
        t_fwd = median_seconds(fwd, jp, js)
        t_bwd = median_seconds(fwd_bwd, jp, js)
        f_fwd, f_bwd = flops(fwd, jp, js), flops(fwd_bwd, jp, js)
        print(
            f"| {batch} | {t_np * 1e3:.3f} | {t_fwd * 1e3:.3f} | {t_np / t_fwd:.1f}x | "
            f"{t_bwd * 1e3:.3f} | {f_fwd / 1e6:.2f} | {f_bwd / 1e6:.2f} | "
            f"{f_bwd / t_bwd / 1e9:.2f} |"
        )


if __name__ == "__main__":
    main()
