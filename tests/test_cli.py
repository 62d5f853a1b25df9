import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from afos.cli import main
from afos.run.rundir import Run

RUN_V1 = Path(__file__).parent / "fixtures" / "run_v1"  # refused before anything is read or written
TINY = ["--population", "4", "--generations", "1", "--train-size", "256", "--val-size", "128"]


@pytest.mark.slow
def test_search_then_show(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["search", "--run-dir", str(run_dir), *TINY]) == 0
    out = capsys.readouterr().out
    assert "Pareto front of" in out
    front = Run.open(run_dir).front()
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
        (["show", "not-a-run"], "not-a-run: no such directory"),
        (["search", "--seed", "-1"], "search.seed and fitness.seed must be at least 0"),
        (["search", "--space", "afos", "--init-exprs", "tanh(x)"],
         "'tanh(x)' cannot be built from the primitives of search space 'afos'"),
        (["search", "--population", "1000000000"], "search.population must be at most 10000, got 1000000000"),
        (["search", "--epochs", "10000000"], "fitness.epochs must be at most 100000"),
        (["search", "--train-size", "-5"], "fitness.train_size must be at least 0 (0: the whole training split)"),
        (["search", "--train-size", "100000"], "fitness.train_size 100000 is more than digits holds: 1151 training"),
        (["search", "--val-size", "1000"], "fitness.val_size 1000 is more than digits holds"),
        (["search", "--model", "bogus"], "unknown model 'bogus'"),
        (["search", "--init-exprs", "1/(x-x)"],
         "init expression '1/(x-x)' simplifies to zoo (complex infinity), which is not a function of x"),
        (["search", "--init-exprs", "x-x"], "init expression 'x-x' simplifies to 0"),
        (["benchmark", "--quick", "--train-size", "-5"], "fitness.train_size must be at least 0"),
        (["benchmark", "--quick", "--train-size", "100000"], "fitness.train_size 100000 is more than digits"),
        (["benchmark", "--quick", "--seeds", "100000000"], "seeds must be at most 1000"),
        (["validate", str(RUN_V1), "--seeds", "100000000"], "protocol.validate_seeds must be at most 1000"),
        (["resume", str(RUN_V1), "--generations", "10000000"], "search.generations must be at most 100000"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, args, fragment):
    args = [a if a != "missing.toml" else str(tmp_path / a) for a in args]
    where = {"search": "--run-dir", "benchmark": "--out"}
    args = [*args, where[args[0]], str(tmp_path / "r")] if args[0] in where else args
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert fragment in line
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_an_unknown_dataset_is_refused_before_the_start_line(tmp_path, capsys):
    assert main(["search", "--dataset", "nope", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("afos search: error: unknown dataset 'nope' (available: digits, "
                                               "fashion_mnist, tfds:NAME;"), err


@pytest.mark.parametrize("where, created", [("afos.cli.commands.config_from_args", False),
                                            ("afos.run.start.prepare", False), ("afos.run.driver._drive", True)])
def test_a_ctrl_c_outside_the_searchs_watch_says_what_it_leaves(tmp_path, capsys, monkeypatch, where, created):
    """Before the run directory exists there is nothing to resume; once it holds the run, the hint is right."""
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, ctrl_c)
    monkeypatch.setattr("afos.run.lock.ignore_sigint", lambda: None)  # this process's Ctrl-C is pytest's
    run_dir = tmp_path / "ctrlc"
    assert main(["search", "--run-dir", str(run_dir), *TINY]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (run_dir / "config.toml").is_file() is created and (created or not run_dir.exists())
    hint = f"stopped by Ctrl-C; every finished evaluation is saved; resume with: afos resume {run_dir}"
    nothing = "stopped by Ctrl-C before the search started, so there is nothing to resume"
    assert err == f"afos search: {hint if created else nothing}"


@pytest.mark.parametrize("where", ["afos.run.start.prepare", "afos.run.driver._evaluator"])
def test_a_ctrl_c_swallowed_while_the_search_starts_still_stops_it(tmp_path, capsys, monkeypatch, where):
    """Python drops a KeyboardInterrupt raised in a garbage-collector callback (JAX registers one): the Ctrl-C is
    noted and the search stops before it writes anything, instead of running to the end with exit status 0."""
    import contextlib
    import importlib
    import signal

    module, name = where.rsplit(".", 1)
    original = getattr(importlib.import_module(module), name)

    def swallowed(*args, **kwargs):
        with contextlib.suppress(KeyboardInterrupt):  # as "Exception ignored in: <function _xla_gc_callback>" does
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(where, swallowed)
    monkeypatch.setattr("afos.run.lock.ignore_sigint", lambda: None)  # this process's Ctrl-C is pytest's
    run_dir = tmp_path / "ctrlc"
    assert main(["search", "--run-dir", str(run_dir), *TINY]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "afos search: stopped by Ctrl-C before the search started, so there is nothing to resume")
    assert not run_dir.exists()


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


LOADED = """
import sys
from afos.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as stop:  # --help
    code = stop.code
heavy = [h for h in sys.argv[1].split(",") if any(m == h or m.startswith(h + ".") for m in sys.modules)]
print("CODE", code, "LOADED", heavy, file=sys.stderr)
"""
FIXTURE = str(RUN_V1)
HEAVY = ("jax", "sympy", "sklearn", "scipy", "pandas", "matplotlib")  # what help never needs
READERS = ("jax", "sklearn", "pandas", "matplotlib")  # what reading a run never needs (sympy names its functions)


LIGHT = [
    (["--help"], HEAVY), (["search", "--help"], HEAVY), (["show", "--help"], HEAVY),
    (["show", FIXTURE], READERS), (["check", FIXTURE], READERS), (["export", FIXTURE, "--format", "latex"], READERS),
    (["export", "--expr", "-x*erf(exp(-x))", "--format", "latex"], READERS),
    (["export", FIXTURE, "--format", "torch"], READERS),
]


@pytest.mark.parametrize("args, unused", LIGHT, ids=[" ".join(Path(a).name for a in args) for args, _ in LIGHT])
def test_commands_that_train_nothing_load_no_heavy_module(args, unused):
    out = subprocess.run([sys.executable, "-c", LOADED, ",".join(unused), *args], capture_output=True, text=True,
                         timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "CODE 0 LOADED []", out.stderr[-2000:]


def test_an_internal_error_is_a_traceback_not_a_user_error(monkeypatch):
    from afos.cli import commands

    def broken(args):
        raise ValueError("a bug inside afos")

    monkeypatch.setattr(commands, "cmd_show", broken)
    with pytest.raises(ValueError, match="a bug inside afos"):
        main(["show", FIXTURE])


def test_resume_offers_only_what_a_resume_may_change(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--generations", "--ray-address", "--workers", "--memory", "--validate"):
        assert option in help_text
    for option in ("--epochs", "--dataset", "--population", "--backend", "--config", "--seed"):
        assert option not in help_text
    with pytest.raises(SystemExit) as stop:
        main(["resume", FIXTURE, "--epochs", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("afos resume: error: --epochs was fixed when the run started; a resume takes only --generations, "
                   "--ray-address, --workers, --memory, --validate, --trust-run, --trust (start a new search to change "
                   "the rest)")
    assert main(["resume", FIXTURE, "--workers", "2"]) == 2  # a local run is not moved to Ray
    assert "which a resume keeps" in capsys.readouterr().err


def test_a_truncated_log_line_is_one_warning_line(tmp_path):
    """What afos works around reaches the user as one line: no file:line, no source line."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    log = run_dir / "evaluations.jsonl"
    log.write_text(log.read_text()[:-40])  # killed mid-write of the last line
    out = subprocess.run([sys.executable, "-m", "afos", "show", str(run_dir)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        f"afos show: warning: {log}: ignoring a truncated last line (298 characters)"]


def test_a_library_warning_is_one_line_naming_its_category_and_package(monkeypatch, capsys):
    from afos.cli import commands

    def warns(run):
        warnings.warn_explicit("deprecated thing\nmore detail", UserWarning,
                               "/env/lib/python3.11/site-packages/jax/_src/api.py", 7)

    monkeypatch.setattr(commands, "print_run", warns)
    assert main(["show", FIXTURE]) == 0
    assert capsys.readouterr().err == "afos show: warning: UserWarning (jax): deprecated thing\n"
    with pytest.warns(UserWarning, match="deprecated thing"):  # the hook was the command's only
        warns(None)


PROGRESS = """
from afos.cli.display import RichReporter
from afos.run.records import Evaluation

EXPR = "x*erf(exp(-x)) + tanh(x*sigmoid(x))*log(1 + exp(x)) - 0.5*x*cos(x)**2 + maximum(x, 0.1*x) + " * 2 + "x"
reporter = RichReporter(12, "search")
reporter.message("evaluating with " + "a long description " * 8)
for g, n in ((11, 3), (12, 1)):  # generation 12 is stopped after 1 of 3
    reporter.generation_started(g, 3)
    for i in range(n):
        ok = i < 2
        reporter.evaluated(Evaluation(g, i, "t", EXPR, "k", "f", 9, "ok" if ok else "failed", None,
                                      0.5 + g / 100 + i / 1000 if ok else None, 0.3, None, 1, (0.6,), 1.0))
    if n == 3:
        reporter.generation_finished(g, [])
reporter.close()
"""


def test_progress_in_a_log_file_is_one_whole_line_per_generation(tmp_path):
    """Not a terminal: no bar cut at 80 columns, but each generation's number and every field on one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    log = tmp_path / "log.txt"
    with log.open("w") as err:
        subprocess.run([sys.executable, "-c", PROGRESS], stderr=err, env=env, check=True, timeout=120)
    expr = "x*erf(exp(-x)) + tanh(x*sigmoid(x))*log(1 + exp(x)) - 0.5*x*cos(x)**2 + maximum(x, 0.1*x) + " * 2 + "x"
    assert log.read_text().splitlines() == [
        "afos search: evaluating with " + "a long description " * 8,
        f"gen 11/12 3/3 trained 2 cached 0 rejected 0 failed 1 best 0.6110 {expr} 0:00:00",
        f"gen 12/12 1/3 trained 3 cached 0 rejected 0 failed 1 best 0.6200 {expr} 0:00:00",
    ]


def test_show_prints_fields_from_the_files_as_they_are(tmp_path):
    """A log line's text is neither rich markup nor terminal control: `[/]` is no MarkupError, `[bold red]` is
    not swallowed, an escape sequence does not reach the terminal (issue 21, item 6)."""
    import json
    import shutil
    import subprocess
    import sys

    run_dir = shutil.copytree(FIXTURE, tmp_path / "run")
    log = run_dir / "evaluations.jsonl"
    lines = [json.loads(text) for text in log.read_text().splitlines()]
    lines[0]["tree"], lines[1]["tree"], lines[1]["expr"] = "[/]", "[bold red]boom", "x\x1b[2J"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = subprocess.run([sys.executable, "-m", "afos", "show", str(run_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "[/]" in out.stdout and "[bold red]boom" in out.stdout and "x\\x1b[2J" in out.stdout
    assert "\x1b" not in out.stdout + out.stderr
