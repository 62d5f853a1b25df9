"""User objects named by a string: a model factory or a dataset loader that is not afos's own.

A model, a dataset or an objective is named in a config (and on the command line) by one of:

- a name of afos itself (``cnn-small``, ``digits``): the zoo and the data module look those up first;
- a name that an installed package registers under the entry-point group ``afos.models``,
  ``afos.datasets`` or ``afos.objectives`` (``[project.entry-points."afos.models"] mynet = "mypkg.nets:build"``);
- an import path ``package.module:attribute`` (dotted attributes allowed), for code on ``sys.path``;
- an object handed to the Python API (``afos.search(model=build)``): named by its import path where it has
  one (``__main__:build`` in a notebook), or, for arrays, ``arrays:<digest>`` of their content.

``resolve`` finds the object; ``source`` says where it comes from (the distribution and version that provide
it, the file), which a run records beside its config (``sources.json``) and checks when it is opened again:
a name that no longer imports is a one-line error naming it, a changed version a warning. This module
imports no JAX: the zoo and the data module check what they get.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Callable
from typing import Any

from afos.errors import AfosError, ConfigError, DataError, ModelError, first_line

GROUPS = {"model": "afos.models", "dataset": "afos.datasets", "objective": "afos.objectives"}
ERRORS: dict[str, type[AfosError]] = {"model": ModelError, "dataset": DataError, "objective": ConfigError}
REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
ARRAYS = "arrays:"  # in-process data handed to the Python API, named by the digest of its content
_GIVEN: dict[str, Any] = {}  # name -> object handed over in this process (arrays, objects without import path)


def is_reference(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:attribute``."""
    return bool(REFERENCE.match(name))


def registered(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The names that installed packages register for ``kind`` (``model`` or ``dataset``)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUPS[kind])}


def describe_forms(kind: str) -> str:
    """The forms a user's ``kind`` may take, for error messages."""
    names = sorted(registered(kind))
    return (f"installed: {', '.join(names)}; " if names else "") + f"or your own as package.module:{_ATTR[kind]}"


_ATTR = {"model": "factory", "dataset": "loader", "objective": "function"}


def resolve(kind: str, name: str) -> Any | None:
    """The object a user's ``name`` denotes, or None if it is neither registered nor an import path.

    Raises:
        ModelError / DataError: the name is an import path or a registered name that does not load; the
            message names the module and why.
    """
    error = ERRORS[kind]
    if name in _GIVEN:
        return _GIVEN[name]
    if name.startswith(ARRAYS):
        raise error(f"{kind} {name!r} was handed over as arrays in another Python process: pass the same "
                    f"arrays again (afos.resume(run_dir, {kind}=...))")
    entry = registered(kind).get(name)
    if entry is not None:
        try:
            return entry.load()
        except Exception as err:  # noqa: BLE001 - the user's package: any failure is theirs, named in one line
            raise error(f"{kind} {name!r} is registered by an installed package as {entry.value!r}, which does "
                        f"not load: {type(err).__name__}: {first_line(err)}") from None
    if not is_reference(name):
        return None
    module_name, _, attribute = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - as above
        raise error(f"{kind} {name!r}: cannot import module {module_name!r} ({type(err).__name__}: "
                    f"{first_line(err)}); install it or put its folder on PYTHONPATH") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise error(f"{kind} {name!r}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise error(f"{kind} {name!r} is a {type(obj).__name__}, not a function or class")
    return obj


def name_of(kind: str, obj: Any) -> str:
    """The name under which the Python API records ``obj`` (a callable, or arrays of data).

    A function or class defined at the top level of a module is named by its import path (``__main__:f`` in
    a notebook or a script) and resolves in any process that defines it; anything else (arrays, a lambda,
    a closure) is kept for this process under a name of its own.
    """
    if callable(obj):
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
        name = f"{module}:{qualname}"
        if module and "<" not in qualname and _lookup(module, qualname) is obj:
            return name
        raise ERRORS[kind](f"{kind} {obj!r} has no import path (define it at the top level of a module or "
                           "of the notebook)")
    name = ARRAYS + digest(obj)
    _GIVEN[name] = obj
    return name


def digest(obj: Any) -> str:
    """A digest of arrays (or a tuple, list or dict of them): their shapes, types and bytes."""
    import numpy as np

    h = hashlib.sha256()
    parts = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, tuple | list) else [obj]
    for part in parts:
        if isinstance(part, int | float):
            h.update(repr(part).encode())
            continue
        a = np.ascontiguousarray(np.asarray(part))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def source(kind: str, name: str) -> dict[str, str] | None:
    """Where a user's ``name`` comes from: ``{"name", "reference", "distribution", "version", "file"}``
    (what is known), or None for afos's own names."""
    if name.startswith(ARRAYS):
        return {"name": name, "reference": name}
    entry = registered(kind).get(name)
    if entry is not None:
        out = {"name": name, "reference": entry.value}
        if entry.dist is not None:
            out |= {"distribution": entry.dist.name, "version": entry.dist.version}
        return out
    if not is_reference(name):
        return None
    module_name = name.partition(":")[0]
    out = {"name": name, "reference": name}
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__file__", None):
        out["file"] = module.__file__
    dists = importlib.metadata.packages_distributions().get(module_name.split(".")[0], [])
    if dists:
        out |= {"distribution": dists[0], "version": importlib.metadata.version(dists[0])}
    return out


def local_modules(names: list[str]) -> list[str]:
    """The files (a single-file module) or folders (a package) of the import paths among ``names`` that no
    installed distribution provides (code on ``sys.path`` only): what a Ray cluster's workers are sent
    (``runtime_env`` ``py_modules``)."""
    installed = importlib.metadata.packages_distributions()
    out = []
    for name in names:
        top = name.partition(":")[0].split(".")[0]
        module = sys.modules.get(top)
        if not is_reference(name) or top == "__main__" or top in installed or module is None:
            continue
        paths = list(getattr(module, "__path__", [])) or [getattr(module, "__file__", None)]
        if len(paths) == 1 and paths[0] and paths[0] not in out:
            out.append(paths[0])
    return out


def check_sources(recorded: dict[str, dict[str, str]], warn: Callable[[str], None]) -> None:
    """Checks a run's recorded sources against this process: each must resolve (else its ModelError or
    DataError); a distribution at another version than recorded is worth ``warn``."""
    for kind, was in recorded.items():
        if kind not in GROUPS:
            continue
        resolve(kind, was["name"])
        now = source(kind, was["name"]) or {}
        if was.get("version") and now.get("version") != was.get("version"):
            warn(f"{kind} {was['name']!r} was recorded with {was.get('distribution')} {was['version']}, this "
                 f"process has {now.get('version') or 'no installed version'}: results may differ")


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj
