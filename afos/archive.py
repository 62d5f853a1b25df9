"""The run directory: the source of truth for resuming and reporting.

``config.toml`` (resolved config), ``evaluations.jsonl`` (one line per finished
evaluation, appended, flushed and fsynced), ``checkpoint.json`` (written
atomically; the previous one is kept as ``checkpoint.prev.json``) and
``pareto.csv`` (the current front). Everything is text; nothing is pickled.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afos import types

CONFIG = "config.toml"
EVALUATIONS = "evaluations.jsonl"
CHECKPOINT = "checkpoint.json"
PREVIOUS_CHECKPOINT = "checkpoint.prev.json"
PARETO = "pareto.csv"
CHECKPOINT_FORMAT = "afos-checkpoint"
CHECKPOINT_VERSION = 1
VALIDATION = "validation.csv"  # written by `afos validate` (held-out test split, fresh seeds)
VALIDATION_DIR = "validation"  # its benchmark directory (resumable)
PARETO_COLUMNS = ("expression", "val_accuracy", "complexity", "val_loss", "generation", "fingerprint", "tree",
                  "val_accuracy_std", "seeds")
ANCHOR_GENERATION = -1  # the generation of anchor lines (status types.ANCHOR)


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked."""


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Reads an evaluations file; a truncated last line (killed mid-write) is dropped with a warning."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: the write was cut off
                warnings.warn(f"{path}: ignoring a truncated last line ({len(line)} characters)", stacklevel=2)
                continue
            raise RunDirError(f"{path}: line {i + 1} is not valid JSON") from None
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


def write_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Atomically replaces the checkpoint, keeping the one before it."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    text = json.dumps(payload, sort_keys=True, allow_nan=False)
    current = run_dir / CHECKPOINT
    if current.exists():
        os.replace(current, run_dir / PREVIOUS_CHECKPOINT)
    write_text_atomic(current, text)


def _read_checkpoint_file(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an afos checkpoint")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"written by a newer afos (checkpoint version {data['version']})")
    return data


def read_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint; falls back to the previous one with a warning."""
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT
    if not current.exists() and not previous.exists():
        return None
    errors = []
    for path in (current, previous):
        if not path.exists():
            continue
        try:
            data = _read_checkpoint_file(path)
        except (ValueError, OSError) as err:
            errors.append(f"{path.name}: {err}")
            continue
        if errors:
            warnings.warn(f"{run_dir}: {'; '.join(errors)}; using {path.name}", stacklevel=2)
        return data
    raise RunDirError(f"{run_dir}: no readable checkpoint ({'; '.join(errors)})")


@dataclass(frozen=True)
class FrontEntry:
    expression: str
    val_accuracy: float
    complexity: int
    val_loss: float | None
    generation: int
    fingerprint: str
    tree: str
    val_accuracy_std: float | None = None  # across the seeds below (None for one seed)
    seeds: int = 1  # initialisation seeds the accuracy is the mean of


def pareto_front(entries: Iterable[FrontEntry]) -> list[FrontEntry]:
    """Non-dominated entries (max accuracy, min complexity), simplest first; one per function."""
    best: dict[str, FrontEntry] = {}
    for e in entries:
        old = best.get(e.fingerprint)
        if old is None or (e.complexity, e.generation) < (old.complexity, old.generation):
            best[e.fingerprint] = e
    ordered = sorted(best.values(), key=lambda e: (e.complexity, -e.val_accuracy, e.generation, e.expression))
    front, top = [], float("-inf")
    for e in ordered:
        if e.val_accuracy > top:
            front.append(e)
            top = e.val_accuracy
    return front


def front_from_records(records: Iterable[dict[str, Any]]) -> list[FrontEntry]:
    """The front over every scored line of an evaluations file (anchors aside, re-scorings applied)."""
    records = [r for r in records if r.get("status") != types.ANCHOR]
    latest = {r["fingerprint"]: r for r in records if r.get("status") == types.RESCORED}
    entries = []
    for r in records:
        if r.get("status") == types.RESCORED:
            continue
        s = latest.get(r["fingerprint"], r)
        if s.get("val_accuracy") is not None:
            entries.append(FrontEntry(r["expr"], s["val_accuracy"], r["complexity"], s.get("val_loss"),
                                      r["generation"], r["fingerprint"], r["tree"], s.get("val_accuracy_std"),
                                      s.get("seeds", 1)))
    return pareto_front(entries)


def anchors_from_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The anchor lines of an evaluations file, in configured order."""
    return sorted((r for r in records if r.get("status") == types.ANCHOR), key=lambda r: r["index"])


def write_pareto_csv(run_dir: Path, front: list[FrontEntry]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PARETO_COLUMNS)
    for e in front:
        writer.writerow(["" if getattr(e, c) is None else getattr(e, c) for c in PARETO_COLUMNS])
    write_text_atomic(run_dir / PARETO, buf.getvalue())


def read_validation_csv(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``validation.csv`` (empty if the run was not validated)."""
    path = Path(run_dir) / VALIDATION
    return list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []


def format_validation_row(row: dict[str, str]) -> tuple[str, str]:
    """(test accuracy 'mean ± std', 'difference to relu [95% CI] p=Wilcoxon') of a validation.csv row."""
    def num(key: str, fmt: str = "+.4f") -> str:
        return "?" if not row.get(key) else format(float(row[key]), fmt)

    acc = f"{num('test_accuracy_mean', '.4f')} ± {num('test_accuracy_std', '.4f')}"
    if row["activation"] == "relu":
        return acc, "(baseline)"
    return acc, f"{num('diff_vs_relu')} [{num('diff_ci_low')}, {num('diff_ci_high')}] p={num('wilcoxon_p', '.3g')}"


def read_pareto_csv(run_dir: Path) -> list[FrontEntry]:
    path = run_dir / PARETO
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.read_text().splitlines()))
    return [
        FrontEntry(r["expression"], float(r["val_accuracy"]), int(r["complexity"]),
                   float(r["val_loss"]) if r["val_loss"] else None, int(r["generation"]), r["fingerprint"], r["tree"],
                   float(r["val_accuracy_std"]) if r.get("val_accuracy_std") else None, int(r.get("seeds") or 1))
        for r in rows
    ]
