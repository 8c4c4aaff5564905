"""Shared timing for the benchmark scripts: median wall time of a jitted call."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable, *args, repeats: int = 10, min_seconds: float = 0.5) -> float:
    """Median seconds per call of ``fn(*args)`` after one warm-up (compile) call.

    Runs at least ``repeats`` times and at least ``min_seconds`` in all; blocks on
    every result so asynchronous dispatch is not mistaken for speed.
    """
    jax.block_until_ready(fn(*args))
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    times.sort()
    return times[len(times) // 2]


def flops(jitted: Callable, *args) -> float:
    """XLA's estimated floating-point operations of one call (0 if it gives none)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')} x{jax.device_count()}"
