import pytest

from afos.errors import SpaceError
from afos.expr import primitives
from afos.ga import space


@pytest.mark.parametrize("name", ["default", "afos", "swish"])
def test_builtin_spaces_load(name):
    s = space.load(name)
    assert s.name == name
    for p in s.unary:
        assert primitives.get(p).arity == 1
    for p in s.binary:
        assert primitives.get(p).arity == 2


def test_afos_space_has_its_published_sizes():
    s = space.load("afos")
    assert (len(s.unary), len(s.binary), len(s.templates)) == (17, 7, 3)
    assert s.representation == "template"
    assert s.template_slots()[2] == ["B", "B", "U", "x", "U", "x", "B", "U", "x", "U", "x"]


def test_default_space_is_free_trees_of_height_3():
    s = space.load("default")
    assert (s.representation, s.max_height) == ("tree", 3)


def _write(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('unary = ["tanh"]\ncolour = "red"', "bad.toml: colour: unknown key (allowed: name"),
        ('unary = ["tanhh"]', "bad.toml: unary: unknown unary primitive 'tanhh' (allowed: id, neg"),
        ('unary = ["add"]', "bad.toml: unary: unknown unary primitive 'add'"),
        ('binary = "add"', "bad.toml: binary: must be a list, got str"),
        ('unary = ["tanh"]\nmax_height = "3"', "bad.toml: max_height: must be a int, got str"),
        ('unary = ["tanh"]\nrepresentation = "graph"', "representation: 'graph' is not one of tree, template"),
        ('unary = ["tanh"]\nrepresentation = "template"\ntemplates = ["B(U(x))"]', "not a complete expression"),
        ('unary = ["tanh"]\nrepresentation = "template"\ntemplates = ["B(U(x), U(x))"]', "binary: template"),
        ('unary = ["tanh"\n', "not valid TOML"),
    ],
)
def test_bad_space_files_give_one_line_errors_naming_file_and_key(tmp_path, text, fragment):
    with pytest.raises(SpaceError) as info:
        space.load(_write(tmp_path, text))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_builtin_and_missing_file():
    with pytest.raises(SpaceError, match="unknown search space 'nope'.*built in: afos, default, swish"):
        space.load("nope")
    with pytest.raises(SpaceError, match="no such search space file"):
        space.load("missing/space.toml")


def test_template_parser():
    assert space.parse_template("B(U(x), B(x, x))") == ["B", "U", "x", "B", "x", "x"]
    with pytest.raises(ValueError, match="unexpected"):
        space.parse_template("B(U(y), x)")
    with pytest.raises(ValueError, match="not a complete"):
        space.parse_template("x x")
