"""The README against what afos does (issue 26, item 9): the run format `afos check` names, what a resume takes,
and what `export --top` and `--rank` do past the end of a front."""

import argparse
import re
from pathlib import Path

from afos.cli import main
from afos.cli.parser import RESUME_OPTIONS, build_parser
from afos.config import Config
from afos.run.rundir import Run

README = (Path(__file__).parent.parent / "README.md").read_text()
FAKE = Path(__file__).parent / "fixtures" / "fake_v1"  # a front of 2 entries


def test_the_readme_names_the_format_afos_check_names(tmp_path, capsys):
    Run.create(tmp_path / "run", Config())
    assert main(["check", str(tmp_path / "run")]) in (0, 1)
    checked = re.search(r"afos run of format (\d+)", capsys.readouterr().out)[1]
    assert re.search(r"The format \(version (\d+)", README)[1] == checked


def test_the_readme_lists_what_a_resume_takes():
    sentence = re.search(r"A resume keeps every setting the run started with: it takes only (.*?)\(`afos resume "
                         r"--help`\)", " ".join(README.split()))[1]
    listed = re.findall(r"`(--[a-z-]+)`", sentence)
    parser = build_parser()
    resume = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["resume"]
    accepted = [s for action in resume._actions for s in action.option_strings if s.startswith("--") and s != "--help"]
    assert sorted(listed) == sorted(accepted) == sorted(RESUME_OPTIONS)


def test_export_past_the_end_of_the_front_says_so_with_top_and_with_rank(capsys):
    assert len(Run.open(FAKE).front()) == 2
    assert main(["export", str(FAKE), "--top", "3", "--format", "numpy"]) == 0
    out = capsys.readouterr()
    assert "def activation_1(" in out.out and "def activation_2(" in out.out and "activation_3" not in out.out
    assert out.err == (f"afos export: warning: top 3 is past the end: the front of {FAKE} has 2 entries, so all 2 "
                       "are exported\n")
    assert main(["export", str(FAKE), "--top", "2", "--format", "numpy"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["export", str(FAKE), "--rank", "3", "--format", "numpy"]) == 2
    assert capsys.readouterr().err == f"afos export: error: rank 3 is out of range: the front of {FAKE} has 2 entries\n"


def test_top_from_python_warns_only_past_the_end():
    import warnings

    from afos import export

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(export.items_from_run(FAKE, top=2)) == 2 and not caught
        assert len(export.items_from_run(FAKE, top=5)) == 2
    assert [str(w.message) for w in caught] == [
        f"top 5 is past the end: the front of {FAKE} has 2 entries, so all 2 are exported"]


def test_the_readme_offers_a_quick_subset_of_a_registered_marker():
    import tomllib

    markers = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["markers"]
    quick = re.search(r'`python -m pytest -q -m "not (\w+)"`', README)
    assert quick and any(m.startswith(f"{quick[1]}:") for m in markers)
