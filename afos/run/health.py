"""The health of a run directory: the log checked line by line and against the checkpoint, and a repair.

The log (``evaluations.jsonl``) is the source of truth, so it is checked whenever a run is opened:

- every line must parse as an evaluation (JSON with the fields of ``records.Evaluation``, each value one afos
  writes there: ``types.value_problem``, an accuracy in [0, 1], a complexity a non-negative integer, ...); a
  line that does not is *damaged*, and nothing it holds is believed;
- a line is identified by ``(generation, index)``: a second line for it with the same function (``key``) is
  a *duplicate*, one with another function or status a *conflict*. The first line wins, as it did for the
  process that wrote them (``Run.append`` returns the recorded line);
- a last line without its newline was cut off by a kill (*truncated*);
- the checkpoint describes the state after its generation's lines: a checkpoint of generation G needs every
  individual of generations 0 to G-1 and the anchors in the log. Where they are missing (the log deleted,
  replaced or cut short) the checkpoint is *ahead* of the log, and a resume would lose that history.

Readers (``show``, ``export``, ``report``) skip damaged and duplicated lines with a warning; a resume refuses
damaged or conflicting lines and a checkpoint ahead of the log, naming what is missing, and takes duplicates
with a warning. ``repair`` moves every line it cannot keep into a side file (``evaluations.set-aside.jsonl``,
one JSON object per line holding the line's number, its problem and its text) after a backup of the whole log:
it never deletes data. Nothing here imports JAX.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afos import types
from afos.config import Config
from afos.errors import RunError, command, read_text
from afos.ga import halving
from afos.run.files import append_jsonl, unused_path, write_text_atomic
from afos.run.records import ANCHOR_GENERATION, Evaluation

SET_ASIDE = "evaluations.set-aside.jsonl"  # what a repair moved out of the log, never deleted

DAMAGED, DUPLICATE, CONFLICT, TRUNCATED = "damaged", "duplicate", "conflict", "truncated"
NOT_JSON = "is not valid JSON"  # of a last line without its newline: cut off (a whole line is damaged, not cut)
_FIELDS = {"generation": int, "index": int, "tree": str, "key": str, "fingerprint": str, "status": str}


@dataclass(frozen=True)
class Problem:
    """A line of the log that is not kept: its number (from 1), kind, text and what is wrong with it."""

    line: int
    kind: str
    text: str
    detail: str

    def describe(self) -> str:
        return f"line {self.line} {self.detail}"


@dataclass
class LogRead:
    """The log as read: the lines kept (first of each identity, in the order written) and those that are not."""

    records: list[Evaluation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the kept lines as written, for a repair to keep them so

    def of_kind(self, *kinds: str) -> list[Problem]:
        return [p for p in self.problems if p.kind in kinds]


def read_log(path: Path, fitness: Any = None) -> LogRead:
    """Every line of the log at ``path`` checked (an absent log reads as empty), its values as a run of fitness
    settings ``fitness`` writes them (``Evaluation.problem``; None: any settings)."""
    out = LogRead()
    if not path.exists():
        return out
    lines = read_text(path, RunError).split("\n")
    first: dict[tuple[int, int], tuple[int, Evaluation]] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record, why = _parse(text, fitness)
        if record is None:
            cut = number == len(lines) and why == NOT_JSON  # no newline after it: the write was cut off
            out.problems.append(Problem(number, TRUNCATED if cut else DAMAGED, text,
                                        "is cut off (a write killed midway)" if cut else why))
            continue
        seen = first.get(record.identity)
        if seen is None:
            first[record.identity] = (number, record)
            out.records.append(record)
            out.texts.append(text)
            continue
        before, old = seen
        g, i = record.identity
        where = "an anchor" if g == ANCHOR_GENERATION else f"generation {g}, index {i}"
        if (old.key, old.tree, old.status) == (record.key, record.tree, record.status):
            out.problems.append(Problem(number, DUPLICATE, text, f"repeats line {before} ({where})"))
        else:
            out.problems.append(Problem(number, CONFLICT, text, f"holds {record.status} {record.tree!r} for {where}, "
                                        f"which line {before} records as {old.status} {old.tree!r}"))
    return out


def _parse(text: str, fitness: Any) -> tuple[Evaluation | None, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None, NOT_JSON
    if not isinstance(data, dict):
        return None, "is not a JSON object"
    for name, kind in _FIELDS.items():
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
            return None, f"has no valid {name!r}"
    if data["status"] not in types.STATUSES:
        return None, f"has an unknown status {data['status']!r}"
    try:
        record = Evaluation.from_json(data)
    except (TypeError, ValueError) as err:
        return None, f"is not an evaluation ({err})"
    why = record.problem(fitness)
    return (None, f"holds a value afos never writes ({why})") if why else (record, "")


def edited_population(config: Config, checkpoint: dict[str, Any] | None) -> str | None:
    """What a resume says where the population of ``config`` is not the one the run was written with (None: it
    is): a checkpoint after generation 0 holds exactly a population of survivors (``Search.tell``)."""
    if not checkpoint or checkpoint.get("generation", 0) <= 0 or not isinstance(checkpoint.get("population"), list):
        return None
    written, now = len(checkpoint["population"]), config.search.population
    if written == now:
        return None
    return (f"search.population is {now} in its config but the run was written with {written} (its checkpoint "
            f"holds {written} individuals): the config was edited; put search.population = {written} back")


def missing_history(config: Config, records: Sequence[Evaluation], checkpoint: dict[str, Any] | None) -> str | None:
    """What the log lacks of the history ``checkpoint`` stands on (None: nothing): the individuals of every
    generation before the checkpoint's, the anchors and the population's functions."""
    if not checkpoint or checkpoint.get("generation", 0) <= 0:
        return None
    upto, population = checkpoint["generation"], config.search.population
    have: dict[int, set[int]] = {}
    for r in records:
        have.setdefault(r.generation, set()).add(r.index)
    gaps = []
    anchors = len(config.protocol.anchors) * len(halving.rung_epochs(config))
    if len(have.get(ANCHOR_GENERATION, ())) < anchors:
        gaps.append(f"{anchors - len(have.get(ANCHOR_GENERATION, ()))} of its {anchors} anchor lines")
    short = [g for g in range(upto) if not set(range(population)) <= have.get(g, set())]
    if short:
        lines = sum(len(set(range(population)) - have.get(g, set())) for g in short)
        gaps.append(f"{count_lines(lines)} of generation{'s' if len(short) > 1 else ''} {_span(short)}")
    trees = {r.tree for r in records if r.generation < upto}
    lost = [item["tree"] for item in checkpoint.get("population", []) if item.get("tree") not in trees]
    if lost and not gaps:
        gaps.append(f"the lines of {len(lost)} individuals of its population (e.g. {lost[0]!r})")
    return "; ".join(gaps) or None


def _span(generations: list[int]) -> str:
    if generations == list(range(generations[0], generations[-1] + 1)) and len(generations) > 2:
        return f"{generations[0]}-{generations[-1]}"
    return ", ".join(map(str, generations))


def count_lines(n: int) -> str:
    return f"{n} line{'' if n == 1 else 's'}"


def summary(problems: Sequence[Problem], limit: int = 3) -> str:
    """``problems`` in one line: the first few, then how many more."""
    text = "; ".join(p.describe() for p in problems[:limit])
    return text + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def set_aside(path: Path, problems: Sequence[Problem]) -> Path:
    """Appends ``problems`` (lines of the log at ``path``) to ``SET_ASIDE`` beside it; returns that file."""
    side = path.with_name(SET_ASIDE)
    for p in problems:
        append_jsonl(side, {"line": p.line, "problem": p.kind, "detail": p.detail, "text": p.text,
                            "from": path.name, "moved": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return side


def keep_aside(path: Path) -> str | None:
    """Renames a damaged file to ``<stem>.damaged[-n]<suffix>`` beside it (never deleted); returns the new name
    (None: there is no such file)."""
    if not path.exists():
        return None
    target = unused_path(path.parent, f"{path.stem}.damaged", path.suffix)
    os.replace(path, target)
    return target.name


def repair_log(path: Path, read: LogRead) -> tuple[Path, Path] | None:
    """Moves the lines ``read`` does not keep from the log at ``path`` into ``SET_ASIDE`` beside it, after a
    copy of the whole log (``evaluations.jsonl.<time>.bak``); returns (backup, side file), or None where
    nothing needed moving. The caller holds the run's lock."""
    if not read.problems:
        return None
    backup = unused_path(path.parent, f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}", ".bak")
    shutil.copy2(path, backup)
    side = set_aside(path, read.problems)  # first into the side file: a crash in between loses nothing
    write_text_atomic(path, "".join(text + "\n" for text in read.texts))
    return backup, side


def unreadable(*readers: Callable[[], Any]) -> tuple[str, ...]:
    """The errors (``RunError``, one sentence each) of the ``readers`` of a run's files that fail."""
    out = []
    for read in readers:
        try:
            read()
        except RunError as err:
            out.append(str(err))
    return tuple(out)


@dataclass(frozen=True)
class Health:
    """What ``afos check`` reports of a run directory (``Run.health``).

    Attributes:
        path: the directory.
        lines: the lines of the log that are kept; ``generations`` their generations (anchors excluded).
        anchors: anchor lines kept.
        problems: the lines that are not kept.
        checkpoint: the generation of the readable checkpoint (None: none, or none readable).
        checkpoint_note: how the checkpoint was read where that is worth saying, else "".
        missing: what the log lacks of the checkpoint's history (``missing_history``), else None.
        front: a sentence on ``pareto.csv``; ``front_ok`` whether it reads.
        files: what is wrong with the other files read back (``surrogate_prior.jsonl``, ``validation.csv``):
            ``unreadable``'s sentences.
    """

    path: Path
    lines: int
    generations: tuple[int, ...]
    anchors: int
    problems: tuple[Problem, ...]
    checkpoint: int | None
    checkpoint_note: str
    missing: str | None
    front: str
    front_ok: bool
    files: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.missing and not self.checkpoint_note and self.front_ok and not self.files

    def describe(self) -> list[str]:
        """A few lines for a person: what the directory holds, each problem and what to do about it."""
        gens = f", generations {_span(list(self.generations))}" if self.generations else ", no generation yet"
        at = f"before generation {self.checkpoint} (the next to run)" if self.checkpoint is not None else (
            "none readable" if self.checkpoint_note else "none yet")
        out = [f"log: {self.lines} lines ({self.anchors} anchors{gens})",
               f"checkpoint: {at}" + (f" ({self.checkpoint_note})" if self.checkpoint_note else ""),
               f"front: {self.front}"]
        fixable = [p for p in self.problems if p.kind != TRUNCATED]
        if fixable:
            out.append(f"problems: {count_lines(len(fixable))} of the log cannot be kept: {summary(fixable)}")
        if any(p.kind == TRUNCATED for p in self.problems):
            out.append("problems: the last line was cut off by a kill (a resume redoes it)")
        if self.missing:
            out.append(f"problems: the checkpoint is ahead of the log, which lacks {self.missing}; a resume refuses "
                       "(put the log back from a backup, or start anew with "
                       f"`{command('search', '--init-from', self.path)}`)")
        if self.checkpoint is None and self.checkpoint_note:
            out.append("problems: no checkpoint can be read; `afos resume` rebuilds the search state by replaying "
                       "the log")
        out += [f"problems: {sentence}" for sentence in self.files]
        if self.problems or not self.front_ok:
            out.append(f"repair: `{command('check', '--repair', self.path)}` moves the lines it cannot keep into "
                       f"{SET_ASIDE} and rewrites a damaged pareto.csv from the log, after a backup of each; nothing "
                       "is deleted")
        out.append("healthy" if self.healthy else "not healthy")
        return out
