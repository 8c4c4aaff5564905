"""Shared pytest set-up: two fake CPU devices, fast compiles, compiled programs reused."""

import atexit
import os
import shutil
import tempfile

# Must be set before jax is imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)


# The session keeps compiled programs on disk, so tests that build the same program through
# different jitted functions (the tiny config's train step in several files) compile it once.
_COMPILED = tempfile.mkdtemp(prefix="handfit-test-compiled-")
atexit.register(shutil.rmtree, _COMPILED, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _COMPILED)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
