"""handfit: dense 3D hand pose from a single RGB image, in JAX."""

__version__ = "0.1.0"
