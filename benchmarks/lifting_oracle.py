"""How much better would a trained DHPE be with better 2D joints? f_M fed the true ones.

    python benchmarks/lifting_oracle.py --workdir=runs/synthetic [--noise_px=2,4,7]

Runs a trained workdir's network on its synthetic test split with j2D(0), the 2D joints
f_M starts from, taken from: the CPM (the baseline, what ``--mode=eval`` scores); the
true joints where visible and the CPM's elsewhere; the true joints everywhere; and each
of these with Gaussian noise of the given size. Prints the 3D AUC (20-50 mm, the
config's protocol), the Procrustes-aligned mean error (PA-MPJPE, the articulation; like
the AUC over the visible joints, while ``--mode=eval``'s is over all 21) and the median
rotation error of each, and the CPM's 2D error on the
visible joints. A network whose scores barely move with true joints is not using them;
one whose scores jump is held back by its 2D evidence.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handfit import evaluate, objective  # noqa: E402
from handfit.data import builders, pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained workdir (config.json)")
    parser.add_argument("--noise_px", default="4", help="comma-separated noise sizes, px")
    parser.add_argument("--dataset", default="synthetic", help="a test set of the config")
    args = parser.parse_args()
    config, hand, model, variables, step = evaluate.restore_trained(args.workdir)

    @jax.jit
    def predict(images, K, joints2d, taught):
        out = model.apply(
            variables, images, K, hand, train=False, teacher_joints2d=joints2d, teacher_mask=taught
        )
        return out.joints3d[-1], out.joints2d_cpm

    source = builders.config_source(config, args.dataset, train=False)
    batches = list(
        pipeline.dataset(source, batch_size=16, train=False, **pipeline.options(config.data))
    )
    hidden = objective.LossOptions(supervise_occluded=True)
    inputs = {"CPM j2D(0) (baseline)": None, "true where visible": "visible", "true": "all"}
    noises = [0.0] + [float(n) for n in args.noise_px.split(",") if n]
    rng = np.random.default_rng(0)
    print(f"{args.workdir}, step {step}, {args.dataset}: f_M started from")
    print("| 2D joints | noise px | 3D AUC | PA-MPJPE mm (visible) | rotation ° median |")
    print("|---|---:|---:|---:|---:|")
    for name, which in inputs.items():
        for noise in noises if which else [0.0]:
            score, aligned = (
                evaluate.Pose3DScore(args.dataset, protocol=p, steps=config.eval.pck_steps)
                for p in (config.eval.protocol, "procrustes")
            )
            errors = []
            for b in batches:
                # the true joints: visible ones as labelled, hidden ones inside the crop projected
                target = objective.targets2d({k: jnp.asarray(v) for k, v in b.items()}, hidden)
                true = np.asarray(target.joints2d)
                true = true + rng.normal(0.0, noise / np.sqrt(2.0), true.shape)
                taught = np.asarray(target.scored) & (which is not None)
                if which == "visible":
                    taught &= b["visible"]
                joints3d, cpm = predict(b["image"], b["K"], jnp.asarray(true, jnp.float32), taught)
                for s in (score, aligned):
                    s.add(np.asarray(joints3d), b["joints3d"], b["visible"])
                errors.append(
                    np.linalg.norm(np.asarray(cpm) - b["joints2d"], axis=-1)[b["visible"]]
                )
            r, pa = score.result(), aligned.result()["epe_mean_mm"]
            rotation = r["rotation_error"]["median_deg"]
            print(f"| {name} | {noise:g} | {r['auc']:.3f} | {pa:.1f} | {rotation:.1f} |")
    error = np.median(np.concatenate(errors))
    print(f"The CPM's 2D joints: median error {error:.2f} px on the visible joints.")


if __name__ == "__main__":
    main()
