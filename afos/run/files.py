"""Durable text files: atomic replacement, appended and fsynced JSON lines, JSON that may be damaged.

What a run or benchmark directory is made of. A crash leaves a file either old or new (``write_text_atomic``),
a new directory either absent or whole (``create_directory``), a line is on disk before the next one starts
(``append_jsonl``), and a line cut off by a kill is dropped with a warning instead of stopping the reader
(``read_jsonl``). Nothing is ever pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from afos.errors import AfosWarning, RunError, read_text


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with _naming(path):
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # half a file on a full disk: the old one stays as it was
            raise
        os.replace(tmp, path)
    _sync_directory(path.parent)


def create_directory(path: Path, files: dict[str, str]) -> None:
    """Makes the directory ``path`` hold ``files`` (name -> text), the last of them written last.

    A directory that does not exist comes into being whole: the files are written into a directory beside it
    (``.<name>.starting-<pid>-<random>``), which is then renamed into place, so that a kill leaves ``path``
    either absent or complete (and at worst that hidden directory beside it). An existing empty directory (the
    caller checked it; it may be a mount point or a link, which a rename would not keep) gets the files in
    order, so that a kill leaves it without the last file, which is the one that marks it complete.
    """
    if path.is_dir():
        for name, text in files.items():
            write_text_atomic(path / name, text)
        return
    path = Path(os.path.abspath(path))  # a name of its own to write beside ("runs/new/.." has none)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.starting-{os.getpid()}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        for name, text in files.items():
            write_text_atomic(staging / name, text)
        os.rename(staging, path)  # fails where something took ``path`` meanwhile (but an empty directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(path: Path) -> None:
    """Makes the names in the directory ``path`` durable (a rename or a new file in it)."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def unused_path(parent: Path, base: str, suffix: str = "") -> Path:
    """``parent/<base><suffix>``, or ``<base>-2<suffix>``, ``-3``, ... where that exists: a new file's name
    beside others, never one that is there."""
    path, n = parent / f"{base}{suffix}", 1
    while path.exists():
        n += 1
        path = parent / f"{base}-{n}{suffix}"
    return path


def json_text(data: Any) -> str:
    return json.dumps(data, sort_keys=True, allow_nan=False)


def read_json_or_none(path: Path) -> Any:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Appends one JSON line and makes it durable before returning."""
    line = json_text(record) + "\n"
    with _naming(path), open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError raised while writing ``path`` names it (a full disk's ENOSPC names no file of its own)."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Reads a file of JSON lines; a truncated last line (killed mid-write) is dropped with a warning."""
    if not path.exists():
        return []
    text = read_text(path, RunError)
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: the write was cut off
                warnings.warn(f"{path}: ignoring a truncated last line ({len(line)} characters)", AfosWarning,
                              stacklevel=2)
                continue
            raise RunError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


def repair_jsonl(path: Path) -> None:
    """Cuts a truncated last line off so that new lines start on a line of their own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(keep))
            f.flush()
            os.fsync(f.fileno())
