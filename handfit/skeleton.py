"""Joint orders (canonical, MANO, RHD, STB, Dexter+Object), their maps, bones.

handfit's canonical order is FreiHAND's ("SNAP"): 0 wrist, then for thumb,
index, middle, ring and pinky in turn the four joints from the base (MCP, or CMC
for the thumb) to the tip. Every map below is a gather: ``canonical =
other[..., MAP, :]``; each of the 21-joint maps is its own inverse.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 21
FINGERS = ("thumb", "index", "middle", "ring", "pinky")

JOINT_NAMES = ("wrist",) + tuple(
    f"{finger}_{part}" for finger in FINGERS for part in ("mcp", "pip", "dip", "tip")
)

WRIST = 0
MIDDLE_MCP = 9
MIDDLE_PIP = 10
# The bone every codebase uses for scale: the middle finger's MCP-PIP bone.
REFERENCE_BONE = (MIDDLE_MCP, MIDDLE_PIP)
# Canonical ids of the five fingertips (thumb, index, middle, ring, pinky).
FINGERTIPS = (4, 8, 12, 16, 20)

# Parent of each canonical joint (-1 for the wrist): the 20 bones of the hand.
PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
BONES = tuple((parent, child) for child, parent in enumerate(PARENTS) if parent >= 0)

# RHD per hand: 0 wrist, then each finger tip -> mcp.
RHD_TO_CANONICAL = (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17)
# STB handPara: 0 palm centre, then little, ring, middle, index, thumb, each mcp -> tip.
STB_TO_CANONICAL = (0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4)
# MANO's 16 joints (0 wrist; 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring,
# 13-15 thumb) with the five fingertip vertices appended as 16..20
# (thumb, index, middle, ring, pinky).
MANO_TO_CANONICAL = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Dexter+Object labels five fingertips: thumb, index, middle, ring, little.
DEXTER_TIPS = FINGERTIPS

ORDERS = {"rhd": RHD_TO_CANONICAL, "stb": STB_TO_CANONICAL, "mano": MANO_TO_CANONICAL}


def to_canonical(joints, order: str):
    """Reorders joints ``[..., 21, D]`` from a named order ('rhd', 'stb', 'mano')."""
    if order not in ORDERS:
        raise ValueError(f"unknown joint order {order!r}; expected one of {sorted(ORDERS)}")
    if joints.shape[-2] != NUM_JOINTS:
        raise ValueError(f"joints must have {NUM_JOINTS} rows on axis -2, got shape {joints.shape}")
    return joints[..., np.asarray(ORDERS[order]), :]


def from_canonical(joints, order: str):
    """Inverse of :func:`to_canonical`: canonical ``[..., 21, D]`` to a named order."""
    inverse = np.argsort(np.asarray(ORDERS[order])) if order in ORDERS else None
    if inverse is None:
        raise ValueError(f"unknown joint order {order!r}; expected one of {sorted(ORDERS)}")
    return joints[..., inverse, :]


def bone_lengths(joints):
    """Lengths ``[..., 20]`` of the 20 bones of canonical joints ``[..., 21, 3]``."""
    parents = np.asarray([p for p, _ in BONES])
    children = np.asarray([c for _, c in BONES])
    diff = joints[..., children, :] - joints[..., parents, :]
    return (diff**2).sum(-1) ** 0.5


def reference_bone_length(joints):
    """Length ``[...]`` of the middle MCP-PIP bone of canonical joints ``[..., 21, 3]``."""
    a, b = REFERENCE_BONE
    return (((joints[..., b, :] - joints[..., a, :]) ** 2).sum(-1)) ** 0.5
