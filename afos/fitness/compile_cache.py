"""JAX's persistent compilation cache: compiled programs kept on disk from one process to the next.

A resumed run, a benchmark run again, a restarted Ray worker compile the same training steps as the process
before them; JAX can keep the compiled programs on disk (``jax_compilation_cache_dir``). ``enable`` turns
that on under afos's cache directory (``$AFOS_CACHE_DIR/jax``, default ``~/.cache/afos/jax``: the directory
of ``fitness.data``'s dataset cache) before the first compilation of every command and worker that trains.
``[evaluator] compilation_cache = false`` or ``AFOS_COMPILATION_CACHE=0`` turns it off. A cache never
changes a result, so a run stored before the setting existed reads it as on. A directory afos cannot write
is one warning and a run without the cache; a cache directory the user gave JAX (``JAX_COMPILATION_CACHE_DIR``)
is left as it is.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from afos.errors import AfosWarning
from afos.fitness.data import cache_dir

ENV = "AFOS_COMPILATION_CACHE"  # 0 / false / no / off: no cache, whatever the run's setting
OFF = ("0", "false", "no", "off")


def directory() -> Path:
    """Where afos keeps compiled programs."""
    return cache_dir() / "jax"


def wanted(setting: bool = True) -> bool:
    """Whether the cache is on: the run's ``evaluator.compilation_cache`` unless the environment says off."""
    return setting and os.environ.get(ENV, "").strip().lower() not in OFF


def enable(setting: bool = True) -> Path | None:
    """Turns the persistent compilation cache on unless ``setting`` or ``$AFOS_COMPILATION_CACHE`` says off;
    returns the directory JAX caches in (None: no cache).

    Call it before the process compiles: JAX reads the directory once, at its first compilation that
    finds one set. Every entry is kept (no minimum compile time or size), so CPU programs, which compile in
    well under JAX's default threshold of a second, are cached too.
    """
    import jax

    given = getattr(jax.config, "jax_compilation_cache_dir", None)
    if given:  # the user's own (JAX_COMPILATION_CACHE_DIR), or an earlier call in this process
        return Path(given)
    if not wanted(setting):
        return None
    path = directory()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # writable: JAX would warn at every entry it cannot write
            pass
    except OSError as err:
        warnings.warn(f"the compilation cache {path} is not usable ({err.strerror or err}); going on without it",
                      AfosWarning, stacklevel=2)
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: every size (0 means JAX's default)
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path
