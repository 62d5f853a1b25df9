"""A run directory's formats: its manifest (``run.json``: its format, the settings it started with, the files its
start wrote) and its checkpoint's envelope.

A new run writes it with the rest of its start, before ``config.toml``, the file that marks a run
(``Run.create``, ``files.create_directory``: the start comes into being whole or not at all). It holds:

- ``version``: the run format (``RUN_FORMAT``). A directory of a later format was written by a newer afos; it
  is refused whole (``NewerFormatError``), never read with another meaning nor repaired.
- ``settings``: a digest of every setting of ``config.toml`` except those a resume may change
  (``config.FREE_ON_RESUME``), and ``digest``, one of them all. A resume refuses a ``config.toml`` edited
  since the start, naming the settings that changed: going on would mix two protocols in one log.
- ``files``: the other files the start wrote that a resume reads (the surrogate's prior, ``sources.json``). A
  resume refuses a run that lacks one, where reading its absence as "nothing" would change the search.

A run written before manifests existed has none: it opens and resumes as it always did. A checkpoint
(``checkpoint.json``) is ``{"format": "afos-checkpoint", "version": CHECKPOINT_VERSION, ...its body}``; one of a
later version is refused the same way, never set aside as damaged. Nothing here imports JAX.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from afos import config as config_lib
from afos.errors import AfosError, RunError

MANIFEST = "run.json"
FORMAT = "afos-run"
RUN_FORMAT = 2  # the newest run format this afos reads (1: before gain normalisation), and the one it writes
CHECKPOINT_FORMAT = "afos-checkpoint"
CHECKPOINT_VERSION = 1


class NewerFormatError(AfosError):
    """A run directory or checkpoint written by a newer afos: refused, never read with another meaning. Not a
    ``RunError``, so that what works around a damaged run (a damaged checkpoint set aside, the state rebuilt
    from the log) never catches it."""


def newer(path: Path, version: int) -> NewerFormatError:
    return NewerFormatError(f"{path}: written by a newer afos (format {version}); upgrade afos to use it")


def interrupted(run_dir: Path, config_name: str) -> str:
    """What a directory holding a start that a kill interrupted (a manifest, no config) says it is."""
    return (f"{run_dir}: a search's start was interrupted here before it wrote {config_name}, so it holds no run: "
            "delete the directory and start the search again")


def make(config_text: str, files: list[str]) -> str:
    """The manifest of a new run whose ``config.toml`` is ``config_text`` and whose start writes ``files``."""
    keys = _digests(_settings(config_text))
    return json.dumps({"format": FORMAT, "version": RUN_FORMAT, "digest": _digest(keys), "settings": keys,
                       "files": sorted(files)}, indent=1, sort_keys=True) + "\n"


def version(run_dir: Path) -> int | None:
    """The run format the manifest in ``run_dir`` declares (None: it has none, or none that can be read)."""
    try:
        data = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    number = data.get("version") if isinstance(data, dict) and data.get("format") == FORMAT else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def check_format(run_dir: Path) -> None:
    """NewerFormatError where ``run_dir`` was written by a newer afos (a run format above ``RUN_FORMAT``)."""
    number = version(run_dir)
    if number is not None and number > RUN_FORMAT:
        raise newer(run_dir, number)


def check(run_dir: Path, config_path: Path) -> None:
    """RunError unless the run in ``run_dir`` still has every file its start wrote and the settings it started
    with in ``config_path`` (a run without a manifest passes: it was written before them)."""
    manifest = _read(run_dir / MANIFEST)
    if manifest is None:
        return
    missing = [name for name in manifest["files"] if not (run_dir / name).is_file()]
    if missing:
        raise RunError(f"{run_dir}: {', '.join(missing)} missing: the run's start wrote it, and a resume without "
                       "it would not go on as the run began; put it back")
    values = _settings(config_path.read_text(encoding="utf-8"))
    now = _digests(values)
    if _digest(now) == manifest["digest"]:
        return
    old = manifest["settings"]
    changed = [_changed(key, values) for key in sorted(set(now) | set(old)) if now.get(key) != old.get(key)]
    raise RunError(f"{run_dir}: {config_path.name} was edited after the run started: "
                   f"{', '.join(changed) or 'its settings no longer match their digest'}; a resume would mix two "
                   "searches in one run: put the settings back, or start a new search with them")


def _read(path: Path) -> dict[str, Any] | None:
    """The manifest in ``path`` (None: there is none); RunError where it is damaged."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: damaged ({err})") from None
    fields = {"version": int, "digest": str, "settings": dict, "files": list}
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            not all(isinstance(data.get(k), t) for k, t in fields.items()) or \
            not all(isinstance(name, str) and "/" not in name for name in data["files"]):
        raise RunError(f"{path}: damaged (not an afos run manifest)")
    if data["version"] > RUN_FORMAT:
        raise newer(path.parent, data["version"])
    return data


def _settings(config_text: str) -> dict[str, Any]:
    """Every setting of a ``config.toml`` as stored ('section.key' -> value), but those a resume may change."""
    data = tomllib.loads(config_text)
    return {key: value for key, value in _flatten(data).items() if key not in config_lib.FREE_ON_RESUME}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        out |= _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def _digests(settings: dict[str, Any]) -> dict[str, str]:
    return {key: _digest(value)[:16] for key, value in settings.items()}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _changed(key: str, values: dict[str, Any]) -> str:
    """How an error names a changed setting: 'search.population is now 8', 'fitness.epochs was removed'."""
    if key not in values:
        return f"{key} was removed"
    shown = json.dumps(values[key], default=str)
    return f"{key} is now {shown}" if len(shown) <= 40 else f"{key} changed"


def checkpoint_text(body: dict[str, Any]) -> str:
    """The text of a checkpoint of the strategy's ``body`` (``Search.save``)."""
    return json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **body}, sort_keys=True,
                      allow_nan=False)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The body of the checkpoint in ``path``; ValueError (or OSError) where it is damaged, NewerFormatError
    where a newer afos wrote it."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an afos checkpoint")
    number = data.get("version", 0)
    if isinstance(number, int) and number > CHECKPOINT_VERSION:
        raise newer(path, number)  # its body means what this afos cannot know
    return {k: v for k, v in data.items() if k not in ("format", "version")}
