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
a changed version is a warning. ``sources.json`` is a record only: nothing is imported because it names it.

A name read from a run directory someone else may have written is imported only with the user's consent
(``afos.run.start.consent``) and through ``load_from_run``: only an import path or a registered name, never
a module of Python's standard library (``os:abort``), and never from the current directory that ``python -m``
or ``python -c`` put on ``sys.path`` (the user puts a folder there with PYTHONPATH). ``describe_import`` says,
without importing anything, what a name would import. This module imports no JAX: the zoo and the data
module check what they get.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
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


def check_sources(recorded: dict[str, dict[str, str]], names: Mapping[str, str], warn: Callable[[str], None]) -> None:
    """Compares a run's recorded sources with the names its config uses (``names``: kind -> name), imported
    by then: a distribution at another version than recorded is worth ``warn``. Nothing is imported here; a
    recorded name the config does not use is said and left alone."""
    for kind, was in recorded.items():
        if kind not in GROUPS or not isinstance(was, dict):
            continue
        if names.get(kind) != was.get("name"):
            warn(f"sources.json records {kind} {was.get('name')!r}, which config.toml does not use: ignored")
            continue
        now = source(kind, was["name"]) or {}
        if was.get("version") and now.get("version") != was.get("version"):
            warn(f"{kind} {was['name']!r} was recorded with {was.get('distribution')} {was['version']}, this "
                 f"process has {now.get('version') or 'no installed version'}: results may differ")


# --- names read from a run directory ----------------------------------------------------------------------
def foreign(kind: str, name: str) -> bool:
    """Whether resolving ``name`` imports code that is not afos's: an import path (afos's own modules included:
    a run may name any function of them) or a name registered by another package than afos. Arrays and objects
    handed over in this process import nothing; afos's own names never reach here (the zoo and the data module
    look them up first)."""
    if name in _GIVEN or name.startswith(ARRAYS):
        return False
    entry = registered(kind).get(name)
    if entry is not None:
        return not entry.value.startswith("afos.")
    return is_reference(name)


def describe_import(kind: str, name: str, typed: bool = False) -> str:
    """What resolving ``name`` (read from a run) would import, found without importing anything:
    ``dataset 'mine.data:load' (module mine.data, /home/me/mine/data.py)``. ``typed``: the user gave the name
    on the command line, so the current directory is searched too."""
    entry, module_name, top = _module_of(kind, name)
    where = [f"module {module_name}"]
    if entry is not None:
        where.insert(0, f"registered by {entry.dist.name if entry.dist else 'an installed package'}")
    dists = importlib.metadata.packages_distributions().get(top, [])
    if dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            where.append(f"of {dists[0]} {importlib.metadata.version(dists[0])}")
    found = _locate(top, typed)
    where.append(found or ("only in the current directory, which afos does not search for a run's code"
                           if _in_cwd_hint(top, typed) else "not found"))
    return f"{kind} {name!r} ({', '.join(where)})"


def only_in_cwd(kind: str, name: str, typed: bool = False) -> bool:
    """Whether the module ``name`` (read from a run) names lies only in the current directory, which afos does
    not search for a run's code (``describe_import`` says so; the remedy is PYTHONPATH=.)."""
    top = _module_of(kind, name)[2]
    return _locate(top, typed) is None and bool(_in_cwd_hint(top, typed))


def _module_of(kind: str, name: str) -> tuple[importlib.metadata.EntryPoint | None, str, str]:
    """The entry point registering ``name`` (None: an import path), its module's name, and that module's top."""
    entry = registered(kind).get(name)
    module_name = (entry.value if entry is not None else name).partition(":")[0]
    return entry, module_name, module_name.split(".")[0]


def load_from_run(kind: str, name: str, typed: bool = False) -> Any | None:
    """``resolve(kind, name)`` for a name read from a run directory, which the user consented to import.

    Only the forms a user types are imported: a registered name or ``package.module:attribute`` whose module
    is not one of Python's standard library (a run naming ``os:abort`` is refused), looked for on
    ``sys.path`` without the current directory that ``python -m`` or ``python -c`` added there (``typed``:
    the user gave the name again on the command line, which searches it as a search does). ``__main__`` names
    only what that module defines itself (a notebook's function, not the ``afos`` command's own ``main``).

    Raises:
        ModelError / DataError / ConfigError: a form that is refused, or a module that does not import here.
    """
    error = ERRORS[kind]
    entry = registered(kind).get(name)
    reference = entry.value if entry is not None else name
    module_name = reference.partition(":")[0]
    top = module_name.split(".")[0]
    if is_reference(reference) and not typed and (top in sys.stdlib_module_names or top in sys.builtin_module_names):
        raise error(f"{kind} {name!r} names {top!r} of Python's standard library, not a {_ATTR[kind]} of a package: "
                    "afos does not import it from a run")
    with _path(typed):
        try:
            obj = resolve(kind, name)
        except AfosError as err:
            raise error(f"{err}{_in_cwd_hint(top, typed)}") from None
    if module_name == "__main__" and getattr(obj, "__module__", None) != "__main__":
        raise error(f"{kind} {name!r}: this process's __main__ does not define it (a run started in a notebook is "
                    f"resumed there, with the {_ATTR[kind]} given again)")
    return obj


def _implicit(entry: str) -> bool:
    """Whether ``entry`` of ``sys.path`` stands for the current directory without the user putting it there:
    '' (``python -c``, the REPL) or the directory ``python -m`` added; a folder on PYTHONPATH is the user's."""
    if entry == "":
        return True
    asked = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return _same(entry, os.getcwd()) and not any(_same(entry, p) for p in asked)


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _search_path(typed: bool) -> list[str]:
    return list(sys.path) if typed else [p for p in sys.path if not _implicit(p)]


@contextlib.contextmanager
def _path(typed: bool) -> Iterator[None]:
    """``sys.path`` without its implicit current directory for the time of an import (unless ``typed``)."""
    saved = list(sys.path)
    sys.path[:] = _search_path(typed)
    try:
        yield
    finally:  # what the imported code added to the path stays, as it would have
        sys.path[:] = saved + [p for p in sys.path if p not in saved]


def _locate(top: str, typed: bool) -> str | None:
    """The file or folder a top-level module is (or would be) imported from, found without importing it."""
    module = sys.modules.get(top)
    if module is not None:
        return getattr(module, "__file__", None) or "already loaded"
    if top in sys.builtin_module_names:
        return "built into Python"
    spec = importlib.machinery.PathFinder.find_spec(top, _search_path(typed))
    return None if spec is None else spec.origin if spec.origin not in (None, "namespace") else \
        ", ".join(spec.submodule_search_locations or [])


def _in_cwd_hint(top: str, typed: bool) -> str:
    """'' or a note that ``top`` lies in the current directory, which afos did not search."""
    if typed or top in sys.modules or importlib.machinery.PathFinder.find_spec(top, [os.getcwd()]) is None:
        return ""
    return f" (module {top} lies in the current directory, which afos does not search for a run's code: PYTHONPATH=.)"


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj
