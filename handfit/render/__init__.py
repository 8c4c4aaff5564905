"""Differentiable rendering: cameras, soft silhouettes, hard rasterisation, textures."""
