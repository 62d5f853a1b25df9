"""Text read from a run or benchmark directory is shown, never run: `afos report` (HTML, markdown, plots) and
`afos export` (generated Python and LaTeX) of directories whose names, labels and log fields are hostile."""

import ast
import csv
import importlib.util
import io
import itertools
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from fakes import write_bench

from afos import export
from afos.export import EXPORTERS, Item, export_latex
from afos.expr import parse
from afos.ga.front import FrontEntry
from afos.study import bench, plots, report

FIXTURES = Path(__file__).parent / "fixtures"
# A tag, a table border, a line break, mathtext that does not parse, the end of a docstring followed by code,
# markdown's code, link and emphasis, escape sequences Python would not compile, a terminal escape.
HOSTILE = ('<script>alert(1)</script> | a\nb $\\frac{$ """; import os; os.system("touch PWNED")  # '
           '`code` [link](javascript:alert(2)) **bold** C:\\New\\x \x1b[2J')
PAYLOADS = ("<script>alert(1)</script>", "$\\frac{$", 'os.system("touch PWNED")')


def _rewrite_csv(path: Path, change) -> None:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for row in rows:
        change(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


@pytest.fixture
def hostile_run(tmp_path, monkeypatch) -> Path:
    """The validated run of tests/fixtures, its directory name, validation rows, anchors' names and config hostile."""
    monkeypatch.chdir(tmp_path)  # where a PWNED marker would appear
    run = tmp_path / HOSTILE.replace("/", "-")
    shutil.copytree(FIXTURES / "run_v1", run)

    def poison(row):
        row["model"], row["dataset"] = "cnn-small " + HOSTILE, "digits " + HOSTILE
        if row["activation"] != "relu":
            row["activation"] += " " + HOSTILE

    _rewrite_csv(run / "validation.csv", poison)
    lines = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    for line in lines:
        if line["status"] == "anchor":
            line["tree"] += " " + HOSTILE
    (run / "evaluations.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = (run / "config.toml").read_text()
    fenced = 'description = """\n```\n<script>alert(3)</script>\n"""'  # a line that would close a ``` fence
    (run / "config.toml").write_text(re.sub(r"^description = .*$", lambda _: fenced, config, flags=re.M))
    return run


@pytest.fixture
def hostile_bench(tmp_path) -> Path:
    """A finished benchmark whose activation and model labels, dataset, name, description and notes are hostile."""
    spec = bench.make_spec({"activations": "relu,elu,x*erf(x)", "models": ["mlp"], "seeds": 3, "epochs": 2})
    d = bench.spec_to_dict(spec)
    for i, act in enumerate(d["activations"]):
        act["label"] = f"{act['label']} {i} {HOSTILE}"
    d["baseline"] = d["activations"][0]["label"]
    d["models"][0]["label"] = "mlp " + HOSTILE
    d["datasets"] = ["digits " + HOSTILE]
    d |= {"name": HOSTILE, "description": HOSTILE, "notes": [HOSTILE]}
    return write_bench(tmp_path, d)


# --- afos report ---------------------------------------------------------------------------------


def _unescaped(text: str) -> str:
    """``text`` without markdown's backslash escapes (what is left is read as markdown)."""
    return re.sub(r"\\.", "", text)


def _assert_inert_markdown(md: str) -> None:
    """Nothing but the fenced code blocks (shown as they are) is read as markup; every table keeps its columns."""
    assert "\x1b" not in md
    live = _unescaped(re.sub(r"^(`{3,})\n.*?\n\1$", "", md, flags=re.S | re.M))
    for fragment in ("<script", "[link]", "](javascript", "`code`", "**bold**", "$"):
        assert fragment not in live, fragment
    lines = md.split("\n")
    tables = [i for i, line in enumerate(lines) if line.startswith("|---")]
    assert tables
    for start in tables:  # every row of a table has the header's cells
        borders = _unescaped(lines[start - 1]).count("|")
        for line in itertools.takewhile(bool, lines[start + 1:]):
            assert line.startswith("| ") and _unescaped(line).count("|") == borders, line


def _assert_inert_html(html: str) -> None:
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text


def test_report_of_a_hostile_run_shows_every_text_and_runs_none(hostile_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a font without a glyph for a control character would warn
        files = report.build(hostile_run)
    html, md = files.html.read_text(), files.markdown.read_text()
    _assert_inert_html(html)
    _assert_inert_markdown(md)
    assert "<th>anchor</th>" in html and html.count("&lt;script&gt;alert(1)") >= 4 + 5  # anchors, validation rows
    # the config is one fenced block, which its own ``` line does not close
    fence = re.search(r"^(`{3,})\n(.*?)\n\1$", md, re.S | re.M)
    assert fence is not None and fence[1] != "```" and "<script>alert(3)</script>" in fence[2]
    assert md.count("<script>alert(3)</script>") == 1
    assert {p.name for p in files.plots} == {"pareto.png", "history.png", "shapes.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in files.plots)
    assert not (hostile_run.parent / "PWNED").exists()


def test_report_of_a_hostile_benchmark_draws_its_labels_as_text(hostile_bench):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = report.build(hostile_bench)  # mathtext of '$\frac{$' would be a ParseError in every figure
    html, md = files.html.read_text(), files.markdown.read_text()
    _assert_inert_html(html)
    _assert_inert_markdown(md)
    assert {p.name for p in files.plots} == {"cd_diagram.png", "curves.png", "shapes.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in files.plots)


def test_a_critical_difference_diagram_draws_any_labels():
    """Labels that mathtext cannot parse, a control character, and labels that would be drawn alike."""
    ranks = {"a\x1b": 1.5, "a\\x1b": 2.0, "$\\frac{$": 2.5, "x" * 60 + "1": 3.0, "x" * 60 + "2": 1.0}
    pvalues = {a: {b: 1.0 if a == b else 0.5 for b in ranks} for a in ranks}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.png_bytes(plots.cd_diagram(ranks, pvalues, 1.0))[:4] == b"\x89PNG"


def test_markdown_helpers_keep_text_as_text():
    from afos.study import stats

    assert stats.markdown_cell("a|b\nc") == "a\\|b<br>c"
    assert stats.markdown_text("1. # x\n- y") == "1\\. # x - y"
    assert stats.markdown_text("# x") == "\\# x"
    assert stats.markdown_fence("a\n````\nb").startswith("`````\n")


# --- afos export ---------------------------------------------------------------------------------

PYTHON_FORMATS = [fmt for fmt, exporter in EXPORTERS.items() if exporter.suffix == ".py"]


def _load(source: str, path: Path):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"afos_untrusted_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _value_at_3(fmt: str, module) -> float:
    """The exported function at x = 3, in its own framework."""
    if fmt == "sympy":
        return float(module.expr.subs(module.x, 3))
    if fmt == "torch":
        import torch

        return float(module.activation(torch.tensor([3.0]))[0])
    if fmt == "tensorflow":
        import tensorflow as tf

        return float(module.activation(tf.constant([3.0]))[0])
    if fmt in ("jax", "flax"):
        import jax.numpy as jnp

        return float(module.activation(jnp.asarray([3.0]))[0])
    return float(module.activation(np.asarray([3.0], np.float32))[0])


def _only_definitions(source: str) -> None:
    """The module is its docstring, imports, constants, functions and classes: no statement that does anything."""
    tree = ast.parse(source)
    kinds = (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.ClassDef)
    assert isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)
    assert all(isinstance(node, kinds) for node in tree.body[1:]), ast.dump(tree)
    assert not any(isinstance(n, ast.Name) and n.id == "os" for n in ast.walk(tree))


@pytest.mark.parametrize("fmt", PYTHON_FORMATS)
def test_export_of_a_hostile_run_keeps_its_text_in_the_docstring(hostile_run, fmt, tmp_path):
    source = export.export_source(fmt, run_dir=hostile_run)  # front: x**2, validated in the hostile case
    _only_definitions(source)
    module = _load(source, tmp_path / f"hostile_{fmt}.py")
    assert not (tmp_path / "PWNED").exists()
    assert _value_at_3(fmt, module) == pytest.approx(9.0)
    for payload in PAYLOADS:  # shown in the docstring as the file has it
        assert payload in module.__doc__


def _item(rows: list[dict[str, str]]) -> Item:
    entry = FrontEntry("x*sigmoid(x)", 0.5, 2, None, 1, "f", "t")
    return Item(parse("x*sigmoid(x)"), 1, entry, "runs/" + HOSTILE, tuple(rows))


HOSTILE_ROW = {"activation": "front#1", "source": "front rank 1", "expression": "x*sigmoid(x)",
               "model": "mlp\n" + HOSTILE + "\nimport os\r\nos.system('touch PWNED')\x00", "dataset": HOSTILE,
               "seeds": "1000\n\\input{/etc/passwd}", "epochs": "1\u2028import os", "n": "2",
               "test_accuracy_mean": "0.5", "test_accuracy_std": "", "diff_vs_relu": "0.1", "diff_ci_low": "",
               "diff_ci_high": "", "wilcoxon_p": ""}


def test_every_line_of_a_latex_header_stays_a_comment():
    item = _item([HOSTILE_ROW])
    *comments, formula = export.render([item], "latex").rstrip("\n").split("\n")
    assert all(line.startswith("%") for line in comments), comments
    assert formula == export_latex.formula(item)


@pytest.mark.parametrize("fmt", ["numpy", "sympy"])
def test_line_breaks_and_escapes_in_a_row_stay_in_the_docstring(fmt, tmp_path, monkeypatch):
    """Rows an API user hands over directly (no CSV reader between) may hold any character at all."""
    monkeypatch.chdir(tmp_path)
    source = export.render([_item([HOSTILE_ROW])], fmt)
    _only_definitions(source)
    module = _load(source, tmp_path / f"row_{fmt}.py")
    assert not (tmp_path / "PWNED").exists()
    assert "\\input{/etc/passwd}" in module.__doc__ and "touch PWNED" in module.__doc__
    assert all(not line.startswith(("import", "os.")) for line in module.__doc__.splitlines())


def test_show_prints_the_validation_heading_read_from_the_file_as_text(hostile_run, capsys):
    from afos.cli import main

    _rewrite_csv(hostile_run / "validation.csv", lambda row: row.update(seeds="[bold red]1000[/] \x1b[2J"))
    assert main(["show", str(hostile_run)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "seeds [bold red]1000[/] \\x1b[2J, 1 epoch" in out  # the verdict's heading and the table's title
    assert "Validated on the test split (seeds [bold red]1000[/]" in out.replace("\n", " ")
