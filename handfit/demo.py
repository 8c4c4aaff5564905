"""``--mode=hands``: pose the configured hand model and write meshes and a preview."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handfit import mano, viz


def pose_hands(config: ml_collections.ConfigDict, workdir: str) -> list[Path]:
    """Writes the rest, mean and random hands of ``config.hand`` to ``workdir/hands``.

    Returns the paths written: one mesh per hand and ``preview.png``.
    """
    model = mano.from_config(config)
    out_dir = Path(workdir) / "hands"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = config.hands.num_random
    key_pose, key_shape = jax.random.split(jax.random.key(config.seed))
    random_pose = mano.sample_poses(key_pose, model, n)
    pose = jnp.concatenate([jnp.zeros((1, 45)), model.hands_mean[None], random_pose])
    shape = jnp.concatenate([jnp.zeros((2, 10)), jax.random.normal(key_shape, (n, 10))])
    names = ["rest", "mean"] + [f"random{i}" for i in range(n)]
    out = jax.jit(mano.forward)(model, pose, shape[:, : model.num_betas])
    vertices, joints = np.asarray(out.vertices), np.asarray(out.joints)

    written = []
    for name, verts in zip(names, vertices):
        path = out_dir / f"{name}.{config.hands.mesh_format}"
        viz.export_mesh(path, verts, model.faces)
        written.append(path)
    preview = out_dir / "preview.png"
    viz.mesh_grid_png(
        preview,
        vertices,
        model.faces,
        names,
        joints,
        suptitle=f"hand model: {model.name} ({model.side})",
    )
    written.append(preview)
    lengths = np.linalg.norm(joints[:, 12] - joints[:, 0], axis=-1) * 100
    print(
        f"hand model: {model.name} ({model.side}), {model.num_vertices} vertices, "
        f"{len(model.faces)} faces"
    )
    for name, length in zip(names, lengths):
        print(f"  {name:>8}: wrist to middle fingertip {length:.1f} cm")
    print(f"wrote {len(written) - 1} meshes and {preview}")
    return written
