"""The library's defaults, read from ``configs/default.py``: the one place each default is written.

handfit's choice: the config file is the source and the library's settings dataclasses are
built from its sections (``refine.RefineConfig`` from ``config.refine``,
``augment.AugmentConfig`` from ``config.augment`` and ``config.data``,
``detect.DetectConfig`` from ``config.detect``, ``objective.LossOptions`` from ``config.loss``
and a few fields of ``config.model`` and ``config.data``, the ``models.dhpe.DHPE`` module from
``config.model``; ``losses.DEFAULT_WEIGHTS`` and ``losses.DEFAULT_TAU`` from ``config.loss``).
A dataclass declares its fields and takes each default from the section (``steps: int =
REFINE.steps``), so a default is changed in ``configs/default.py`` alone, and ``configs/``
imports nothing from handfit. The file is read from the repository checkout handfit is
installed from (``pip install -e .``).
"""

from __future__ import annotations

import dataclasses
import functools
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.py"


@functools.cache
def _get_config():
    if not DEFAULT_CONFIG.is_file():
        raise FileNotFoundError(
            f"handfit reads its defaults from {DEFAULT_CONFIG}, which is missing: install "
            "handfit from its repository checkout (pip install -e .), which holds configs/"
        )
    return runpy.run_path(str(DEFAULT_CONFIG))["get_config"]


def config() -> ml_collections.ConfigDict:
    """A fresh copy of ``configs/default.py``'s ``get_config()``."""
    return _get_config()()


@functools.cache
def section(name: str) -> ml_collections.FrozenConfigDict:
    """The default config's section ``name`` (dotted, e.g. ``'refine'``, ``'loss.weights'``)."""
    node = config()
    for key in name.split("."):
        node = node[key]
    return ml_collections.FrozenConfigDict(node)


def _like(value: Any, default: Any) -> Any:
    """``value`` as the type of the field's ``default``: lists as tuples, ints as floats where
    the default is a float (a hashable, exactly typed static argument of jit)."""
    if isinstance(value, list | tuple):
        element = default[0] if isinstance(default, tuple) and default else None
        return tuple(_like(v, element) for v in value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build(cls: type, *sections: Mapping, known: tuple[str, ...] = ()) -> Any:
    """The dataclass ``cls`` with each field that one of ``sections`` holds (the first that
    has it wins); the other fields keep their defaults.

    Args:
      cls: a dataclass whose field names are keys of the sections.
      sections: config sections (ConfigDict or dict), e.g. ``config.refine``.
      known: names of default sections (e.g. ``('refine',)``): a key of ``sections[i]`` that
        is not in ``known[i]``'s default section is refused, naming it (a typo in a dict).
    """
    for name, given in zip(known, sections, strict=False):
        unknown = sorted(set(given.keys()) - set(section(name).keys()))
        if unknown:
            raise ValueError(
                f"config.{name}: unknown fields {unknown}; known: {sorted(section(name).keys())}"
            )
    kwargs = {}
    for field in dataclasses.fields(cls):
        for given in sections:
            if field.name in given:
                kwargs[field.name] = _like(given[field.name], field.default)
                break
    return cls(**kwargs)
