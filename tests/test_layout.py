"""The shape of the package: the layers import downwards, modules stay small, the public API is curated."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import afos

PACKAGE = Path(afos.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
# Each layer may import the ones before it, never one after it.
LAYERS = ["errors", "words", "plugins", "types", "expr", "ga.space", "config", "ga", "run.files", "run.manifest",
          "run.memory", "run.records", "run.health", "run.checkpoints", "run.lock", "run.rundir", "fitness", "examples",
          "run.start", "run.driver", "study", "export", "cli"]


def _layer(module: str) -> int:
    name = module.removeprefix("afos.")
    own = [(len(layer), i) for i, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + ".")]
    return max(own)[1] if own else min(i for i, layer in enumerate(LAYERS) if layer.startswith(name + "."))


def _imported(node: ast.ImportFrom) -> list[str]:
    """The modules an ``from afos.x import y`` loads: ``afos.x.y`` where that is a module, else ``afos.x``."""
    out = []
    for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        path = PACKAGE.parent / Path(*sub.split("."))
        out.append(sub if path.with_suffix(".py").exists() or path.is_dir() else node.module)
    return out


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_short_or_say_why_not(path):
    tree = ast.parse(path.read_text())
    lines = len(path.read_text().splitlines())
    assert lines <= 400 or "longer than 400 lines" in (ast.get_docstring(tree) or ""), f"{path}: {lines} lines"


@pytest.mark.parametrize("path", [p for p in MODULES if _name(p) not in ("afos", "afos.__main__")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_what_is_below_them(path):
    me = _layer(_name(path))
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("afos."):
            for module in _imported(node):
                assert _layer(module) <= me, f"{_name(path)} (layer {LAYERS[me]}) imports {module}"


def test_the_public_api_is_curated_and_loads_lazily():
    code = ("import sys, afos; assert 'jax' not in sys.modules and 'afos.run' not in sys.modules; "
            "assert afos.Run.__module__ == 'afos.run.rundir' and 'jax' not in sys.modules; "
            "print(sorted(afos.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names = eval(out.stdout)  # noqa: S307 - our own output, a list of names
    assert {"Run", "Config", "search", "resume", "AfosError", "RunError", "export_source", "parse",
            "FitnessProblem"} <= set(names)
    check = "import afos; afos.config.override(afos.Config(), search={'population': 8}); print(afos.ga.__name__)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout == "afos.ga\n"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        afos.nope  # noqa: B018


def test_every_package_is_installed():
    """A subpackage missing from pyproject.toml's list would be left out of `pip install .`."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_name(p) for p in MODULES if p.name == "__init__.py"}
    assert packages <= listed, sorted(packages - listed)
