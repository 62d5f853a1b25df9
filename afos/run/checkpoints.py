"""A run's checkpoints: ``checkpoint.json``, the search's state at the last generation boundary, and
``checkpoint.prev.json``, the one before it. Each is replaced atomically; the envelope and its format are
``afos.run.manifest``'s, the values in it are checked as they are read (``records.checkpoint_problem``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from afos.errors import AfosWarning, RunError
from afos.run import health, manifest
from afos.run import records as records_lib
from afos.run.files import write_text_atomic

CHECKPOINT = "checkpoint.json"  # the search's state at the last generation boundary
PREVIOUS_CHECKPOINT = "checkpoint.prev.json"  # the one before (used, with a warning, if the newest is damaged)


def read(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint's body (None: there is none yet); falls back to the previous one with a
    warning, and raises RunError if neither can be read (``manifest.NewerFormatError`` at once where a newer afos
    wrote one: refused, never set aside)."""
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT
    if not current.exists() and not previous.exists():
        return None
    errors = []
    for path in (current, previous):
        if not path.exists():
            continue
        try:
            data = manifest.read_checkpoint(path)
            if why := records_lib.checkpoint_problem(data):
                raise ValueError(why)  # read as unreadable: the previous checkpoint, or the log replayed
        except (ValueError, OSError) as err:
            errors.append(f"{path.name}: {err}")
            continue
        if errors:
            warnings.warn(f"{run_dir}: {'; '.join(errors)}; using {path.name}", AfosWarning, stacklevel=3)
        return data
    raise RunError(f"{run_dir}: no readable checkpoint ({'; '.join(errors)})")


def ensure(run_dir: Path, body: dict[str, Any]) -> None:
    """Writes ``body`` as the first checkpoint unless one can be read; unreadable ones are kept aside as
    ``checkpoint*.damaged.json`` (a resume that rebuilt the state from the log writes its own). The caller holds
    the lock."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback to the previous checkpoint was reported on reading it
        try:
            if read(run_dir) is not None:
                return
        except RunError:
            for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
                health.keep_aside(run_dir / name)
    write(run_dir, body)


def write(run_dir: Path, body: dict[str, Any]) -> None:
    """Atomically replaces the checkpoint, keeping the one before it."""
    text = manifest.checkpoint_text(body)
    current = run_dir / CHECKPOINT
    if current.exists():
        os.replace(current, run_dir / PREVIOUS_CHECKPOINT)
    write_text_atomic(current, text)
