"""Where does a trained DHPE lose its 3D AUC: the hand's turn within the image, or in depth?

    python benchmarks/rotation_oracle.py --workdir=runs/synthetic

Runs a trained workdir's network on its test split and, for each hand, splits the rotation
that best maps its predicted joints onto the true ones (``metrics.similarity_transform``)
as R = S T: T about the viewing axis (the turn within the image, which 2D joints show) and
S about an axis in the image plane (the turn in depth, which 2D joints leave ambiguous;
``metrics.image_plane_angles_deg``). Prints the 3D AUC (20-50 mm, the config's protocol) of
the network's joints as they are, with T undone, with the turn in depth undone (T^-1 R),
and with both undone (R: the articulation alone). What test-time refinement on 2D evidence
can win is about the row with T undone; the rest is the turn in depth.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handfit import evaluate, metrics  # noqa: E402
from handfit.data import builders, pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained workdir (config.json)")
    parser.add_argument("--dataset", default="synthetic", help="a test set of the config")
    args = parser.parse_args()
    config, hand, model, variables, step = evaluate.restore_trained(args.workdir)
    predict = jax.jit(lambda x, K: model.apply(variables, x, K, hand, train=False).joints3d[-1])
    source = builders.config_source(config, args.dataset, train=False)
    undo = {
        "the network": lambda R: np.eye(3),
        "turn within the image undone (T)": metrics.image_plane_turn,
        "turn in depth undone (T^-1 R)": lambda R: metrics.image_plane_turn(R).T @ R,
        "both undone (R)": lambda R: R,
    }
    scores = {
        k: evaluate.Pose3DScore(
            args.dataset, protocol=config.eval.protocol, steps=config.eval.pck_steps
        )
        for k in undo
    }
    for b in pipeline.dataset(source, batch_size=16, train=False, **pipeline.options(config.data)):
        pred = np.asarray(predict(b["image"], b["K"]), np.float64)
        gt, visible = np.asarray(b["joints3d"], np.float64), np.asarray(b["visible"])
        rotations = {}  # example -> R of its best similarity (scored examples only)
        for i in range(len(pred)):
            w = (visible[i] > 0) & np.isfinite(gt[i]).all(-1)
            if w.sum() >= 3 and np.isfinite(pred[i]).all():
                rotations[i] = metrics.similarity_transform(pred[i], gt[i], w.astype(float))[1]
        for name, part in undo.items():
            turned = pred.copy()  # unscored examples stay unturned, as Pose3DScore scores them
            for i, R in rotations.items():
                root = pred[i, :1]
                turned[i] = (pred[i] - root) @ part(R).T + root
            scores[name].add(turned, gt, visible)
    rotation = scores["the network"].result()["rotation_error"]
    print(
        f"{args.workdir}, step {step}, {args.dataset}: median rotation error "
        f"{rotation['median_deg']:.1f}° (within the image {rotation['in_plane_median_deg']:.1f}°, "
        f"in depth {rotation['out_of_plane_median_deg']:.1f}°)"
    )
    print("| the network's joints | 3D AUC | rotation ° median |")
    print("|---|---:|---:|")
    for name, score in scores.items():
        r = score.result()
        print(f"| {name} | {r['auc']:.3f} | {r['rotation_error']['median_deg']:.1f} |")


if __name__ == "__main__":
    main()
