"""Benchmark presets: the designs of the studies afos grew out of, and their quick forms.

A preset (``benchmarks/presets/*.toml``, installed as ``afos.presets``) has a ``[benchmark]`` table, any keys
of ``afos.study.bench.BenchSettings``, and a ``[quick]`` table: what ``--quick`` changes so that it runs in
seconds, plus ``[quick.dataset_fallback]`` (a dataset that may not be available offline -> one that is) and
``note`` (the reason shown in the report). The command line overrides both.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from afos.errors import BenchError, read_text
from afos.ga.space import data_files
from afos.study.bench import BenchSettings, check_keys

# What `--quick` does to any benchmark before a preset's own [quick] table and the command line apply.
# Equal split sizes: the evaluation step compiles once per cell instead of three times.
DEFAULT_QUICK: dict[str, Any] = {"epochs": 1, "seeds": 2, "train_size": 128, "val_size": 128, "test_size": 128,
                                 "case_epochs": []}


def preset_names() -> list[str]:
    presets = data_files("afos.presets", "benchmarks/presets")
    return sorted(p.name[:-5] for p in presets.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The raw values of a preset (a built-in name or a .toml file), in its quick form if asked."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise BenchError(f"{path}: no such preset file")
        text, source = read_text(path, BenchError), str(path)
    elif str(name_or_path) in preset_names():
        text = (data_files("afos.presets", "benchmarks/presets") / f"{name_or_path}.toml").read_text()
        source = f"benchmarks/presets/{name_or_path}.toml"
    else:
        raise BenchError(f"unknown preset {str(name_or_path)!r} (available: {', '.join(preset_names())})")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{source}: not valid TOML ({err})") from None
    if set(doc) - {"benchmark", "quick"}:
        raise BenchError(f"{source}: unknown section(s) {sorted(set(doc) - {'benchmark', 'quick'})} "
                         "(allowed: benchmark, quick)")
    values = {"name": path.stem, **doc.get("benchmark", {})}
    check_keys(values, source + " [benchmark]")
    if quick:
        values = apply_quick(values, doc.get("quick", {}), source)
    return values


def apply_quick(values: dict[str, Any], quick: dict[str, Any], source: str = "quick") -> dict[str, Any]:
    """The quick form: tiny data and few seeds, datasets replaced by ``dataset_fallback`` where named."""
    quick = dict(quick)
    fallback = quick.pop("dataset_fallback", {})
    note = quick.pop("note", "")
    check_keys(quick, source + " [quick]")
    out = {**values, **DEFAULT_QUICK, **quick}
    datasets = out.get("datasets", BenchSettings().datasets)
    out["datasets"] = list(dict.fromkeys(fallback.get(d, d) for d in datasets))
    notes = list(out.get("notes", [])) + ["quick form: tiny data, few seeds; not for conclusions"]
    notes += [f"quick form: dataset {d} replaced by {fallback[d]} ({note or 'not available offline'})"
              for d in datasets if d in fallback]
    out["notes"] = notes
    out["name"] = f"{out.get('name') or 'bench'}-quick"
    return out
