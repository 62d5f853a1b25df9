import subprocess
import sys

import pytest

from afos import archive
from afos.cli import main

TINY = ["--population", "4", "--generations", "1", "--train-size", "256", "--val-size", "128"]


def test_search_then_show(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["search", "--run-dir", str(run_dir), *TINY]) == 0
    out = capsys.readouterr().out
    assert "Pareto front of" in out
    front = archive.read_pareto_csv(run_dir)
    assert front[0].expression in out
    assert main(["show", str(run_dir)]) == 0
    assert front[-1].expression in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["search", "--space", "nope"], "unknown search space 'nope'"),
        (["search", "--dataset", "nope", *TINY], "unknown dataset 'nope'"),
        (["search", "--population", "1"], "search.population must be at least 2"),
        (["search", "--config", "missing.toml"], "missing.toml: no such config file"),
        (["show", "not-a-run"], "not-a-run is not an afos run directory"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, args, fragment):
    args = [a if a != "missing.toml" else str(tmp_path / a) for a in args]
    args = [*args, "--run-dir", str(tmp_path / "r")] if args[0] == "search" else args
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert fragment in line
    assert not (tmp_path / "r" / "checkpoint.json").exists()


def test_config_file_with_an_unknown_key(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[search]\npopulaton = 4\n")
    assert main(["search", "--config", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown key 'populaton' (allowed: space, population" in capsys.readouterr().err


def test_python_dash_m_afos_runs():
    out = subprocess.run([sys.executable, "-m", "afos", "--help"], capture_output=True, text=True, check=True)
    assert "search" in out.stdout and "show" in out.stdout


def test_expressions_may_start_with_a_minus(capsys):
    assert main(["export", "--expr", "-x*erf(exp(-x))", "--format", "latex"]) == 0
    assert "operatorname{erf}" in capsys.readouterr().out
    from afos.cli import _shield_leading_minus

    assert _shield_leading_minus(["--seed", "-1", "-o", "f", "--expr", "-x"]) == ["--seed", " -1", "-o", "f",
                                                                                  "--expr", " -x"]
