"""Search spaces: TOML files naming the primitives, limits and representation.

A space is either a free ``tree`` (any composition up to ``max_height``) or a set
of fixed ``template`` shapes such as AFOS's ``B(U(x), U(x))``, where every ``U``
slot takes a unary primitive and every ``B`` slot a binary one.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from afos.errors import SpaceError, read_text
from afos.expr import primitives

REPRESENTATIONS = ("tree", "template")
_KEYS = {
    "name": str,
    "description": str,
    "representation": str,
    "unary": list,
    "binary": list,
    "min_height": int,
    "max_height": int,
    "templates": list,
}
_TEMPLATE_TOKEN = re.compile(r"\s*(?:([UBx])|([(),]))")


@dataclass(frozen=True)
class SearchSpace:
    name: str
    representation: str
    unary: tuple[str, ...]
    binary: tuple[str, ...]
    min_height: int = 1
    max_height: int = 3
    templates: tuple[str, ...] = ()
    description: str = ""
    source: str = field(default="", compare=False)

    def template_slots(self) -> list[list[str]]:
        """Each template as its prefix list of slots: 'U', 'B' or 'x'."""
        return [parse_template(t) for t in self.templates]

    def to_dict(self) -> dict:
        out = {"name": self.name, "description": self.description, "representation": self.representation,
               "unary": list(self.unary), "binary": list(self.binary)}
        if self.representation == "tree":
            out |= {"min_height": self.min_height, "max_height": self.max_height}
        else:
            out["templates"] = list(self.templates)
        return out


def parse_template(text: str) -> list[str]:
    """'B(U(x), U(x))' -> ['B', 'U', 'x', 'U', 'x'], checking that arities fit (SpaceError otherwise)."""
    pos, tokens = 0, []
    while pos < len(text.rstrip()):
        m = _TEMPLATE_TOKEN.match(text, pos)
        if not m:
            raise SpaceError(f"template {text!r}: unexpected {text[pos:].strip()[:10]!r} at column {pos + 1}")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    slots = [t for t in tokens if t in "UBx"]
    need = 1  # open argument places in the prefix walk; complete when it reaches 0 at the end
    for i, s in enumerate(slots):
        need += {"U": 0, "B": 1, "x": -1}[s]
        if need == 0 and i != len(slots) - 1:
            need = -1  # complete before the end: trailing slots
            break
    if need != 0 or not slots:
        raise SpaceError(f"template {text!r} is not a complete expression of U, B and x")
    return slots


def _fail(source: str, key: str, message: str) -> SpaceError:
    return SpaceError(f"{source}: {key}: {message}")


def from_dict(data: dict, source: str = "<space>") -> SearchSpace:
    """Validates a parsed space file; raises SpaceError naming ``source`` and the key."""
    for key, value in data.items():
        if key not in _KEYS:
            raise _fail(source, key, f"unknown key (allowed: {', '.join(_KEYS)})")
        want = _KEYS[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise _fail(source, key, f"must be a {want.__name__}, got {type(value).__name__}")
    representation = data.get("representation", "tree")
    if representation not in REPRESENTATIONS:
        raise _fail(source, "representation", f"{representation!r} is not one of {', '.join(REPRESENTATIONS)}")
    lists = {}
    for key, arity in (("unary", 1), ("binary", 2)):
        names = data.get(key, [])
        allowed = primitives.names(arity)
        for name in names:
            if name not in allowed:
                raise _fail(source, key, f"unknown {key} primitive {name!r} (allowed: {', '.join(allowed)})")
        if len(set(names)) != len(names):
            raise _fail(source, key, "lists a primitive twice")
        lists[key] = tuple(names)
    if not lists["unary"] and not lists["binary"]:
        raise _fail(source, "unary", "a space needs at least one primitive")
    space = SearchSpace(
        name=data.get("name", Path(source).stem),
        representation=representation,
        unary=lists["unary"],
        binary=lists["binary"],
        min_height=data.get("min_height", 1),
        max_height=data.get("max_height", 3),
        templates=tuple(data.get("templates", [])),
        description=data.get("description", ""),
        source=source,
    )
    _check_shape(space, source)
    return space


def _check_shape(space: SearchSpace, source: str) -> None:
    if space.representation == "tree":
        if not 1 <= space.min_height <= space.max_height <= 12:
            raise _fail(source, "max_height", "need 1 <= min_height <= max_height <= 12")
        if space.templates:
            raise _fail(source, "templates", "only allowed with representation = 'template'")
        return
    if not space.templates:
        raise _fail(source, "templates", "representation 'template' needs at least one template")
    for template in space.templates:
        try:
            slots = parse_template(template)
        except SpaceError as err:
            raise _fail(source, "templates", str(err)) from None
        if "U" in slots and not space.unary:
            raise _fail(source, "unary", f"template {template!r} has U slots but no unary primitives")
        if "B" in slots and not space.binary:
            raise _fail(source, "binary", f"template {template!r} has B slots but no binary primitives")


def data_files(package: str, folder: str):
    """The installed data package ``package`` (e.g. ``afos.search_spaces``), or the checkout's ``folder``.

    An installed afos maps the top-level ``search_spaces/`` and ``benchmarks/presets/`` to packages;
    when Python imports afos straight from a checkout (``python -m afos`` in the repository), the
    folders themselves are used.
    """
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / folder  # afos/ga/space.py -> the checkout


def _spaces():
    return data_files("afos.search_spaces", "search_spaces")


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _spaces().iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path) -> SearchSpace:
    """Loads a space from a file path, or a built-in space by name (``default``, ``afos``, ``swish``)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or len(path.parts) > 1:
        if not path.is_file():
            raise SpaceError(f"{path}: no such search space file")
        text, source = read_text(path, SpaceError), str(path)
    else:
        resource = _spaces() / f"{name_or_path}.toml"
        if not resource.is_file():
            raise SpaceError(f"unknown search space {str(name_or_path)!r} (built in: {', '.join(builtin_names())}; "
                             "or give a path to a .toml file)")
        text, source = resource.read_text(), f"search_spaces/{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpaceError(f"{source}: not valid TOML ({err})") from None
    return from_dict(data, source)
