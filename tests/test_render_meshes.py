"""Test meshes for the render tests (posed open hands, a small icosphere) and their checks."""

from __future__ import annotations

import numpy as np
import trimesh

DEPTH = 0.45  # metres: a hand at this depth fills a 224² view with f = 500 px


def _substitute_hand(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A hand-sized mesh of ~1500 faces (palm ellipsoid and five capsules)."""
    rng = np.random.default_rng(seed)
    palm = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    palm.apply_scale([0.045, 0.05, 0.015])
    parts = [palm]
    bases = [(-0.035, -0.04), (-0.012, -0.05), (0.012, -0.052), (0.034, -0.045), (0.05, 0.0)]
    for i, (bx, by) in enumerate(bases):
        length = 0.07 if i < 4 else 0.05
        cap = trimesh.creation.capsule(height=length, radius=0.009, count=[10, 12])
        cap.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        cap.apply_translation([0, -length / 2, 0])
        cap.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 1.2), [1, 0, 0]))
        if i == 4:
            cap.apply_transform(trimesh.transformations.rotation_matrix(-1.0, [0, 0, 1]))
        cap.apply_translation([bx, by, 0])
        parts.append(cap)
    mesh = trimesh.util.concatenate(parts)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def hand_meshes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` randomly posed hands centred at (0, 0, DEPTH): (vertices [n, V, 3], faces, name).

    Uses the open hand model (``handfit.mano``) when it is importable, else a substitute.
    """
    try:
        import jax
        import jax.numpy as jnp

        from handfit import mano

        model = mano.open_hand()
        key = jax.random.PRNGKey(seed)
        k_pose, k_rot = jax.random.split(key)
        pose = mano.sample_poses(k_pose, model, n)
        rot = 0.4 * jax.random.normal(k_rot, (n, 3))
        verts = np.asarray(mano.forward(model, pose, jnp.zeros((n, 10)), rot).vertices)
        faces = np.asarray(model.faces, np.int32)
        name = "open hand (handfit.mano)"
    except ImportError:
        pairs = [_substitute_hand(seed * 1000 + i) for i in range(n)]
        verts = np.stack([p[0] for p in pairs])
        faces = pairs[0][1]
        name = "substitute hand (capsules)"
    lo, hi = verts.min(1, keepdims=True), verts.max(1, keepdims=True)
    verts = verts - 0.5 * (lo + hi) + np.array([0.0, 0.0, DEPTH], np.float32)
    return verts.astype(np.float32), faces, name


def sphere(radius: float = 0.3, depth: float = 2.0, subdivisions: int = 1):
    """An icosphere at (0, 0, depth): (vertices [V, 3] float32, faces [F, 3] int32)."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = np.asarray(m.vertices, np.float32) + np.array([0, 0, depth], np.float32)
    return v, np.asarray(m.faces, np.int32)


def test_hand_meshes_are_hand_sized_and_in_front():
    verts, faces, _ = hand_meshes(2)
    assert verts.shape[0] == 2 and faces.shape[1] == 3 and faces.max() < verts.shape[1]
    extent = verts.max(1) - verts.min(1)
    assert np.all(extent.max(-1) > 0.1) and np.all(extent.max(-1) < 0.25)
    assert np.all(verts[..., 2] > 0.3)
