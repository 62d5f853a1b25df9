"""Every command a message suggests can be pasted into a shell: its paths are quoted (``errors.command``)."""

import os
import shlex
import signal
from pathlib import Path

import pytest
from fakes import FakeTraining, fake_describe

from afos import config
from afos.errors import RunError, command
from afos.run import driver, rundir
from afos.run.rundir import Run

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = "$HOME; touch pwned"  # a directory name that a shell would run as code


def _small_run(run_dir: Path) -> Path:
    cfg, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)
    driver.run(config.override(cfg, search={"generations": 1}), run_dir, evaluator=FakeTraining(),
               describe=fake_describe)
    return run_dir


def test_suggested_commands_quote_their_paths_for_the_shell(tmp_path, monkeypatch):
    """A run directory named like shell code is shown quoted: pasted into a shell, it is a path."""
    monkeypatch.chdir(tmp_path)
    run_dir = _small_run(Path(HOSTILE))
    assert command("resume", run_dir) == "afos resume '$HOME; touch pwned'"
    assert command("resume", "runs/plain") == "afos resume runs/plain"
    assert shlex.split(command("check", "--repair", run_dir)) == ["afos", "check", "--repair", HOSTILE]
    with pytest.raises(RunError) as err:
        Run.check_free(run_dir)
    assert "`afos resume '$HOME; touch pwned'`" in str(err.value)
    with (run_dir / rundir.EVALUATIONS).open("a") as f:
        f.write("garbage\n")
    hint = "`afos check --repair '[$]HOME; touch pwned'`"
    with pytest.raises(RunError) as err, pytest.warns(UserWarning, match=hint):
        driver.resume(run_dir, generations=2, evaluator=FakeTraining(), describe=fake_describe)
    assert "`afos check --repair '$HOME; touch pwned'`" in str(err.value)
    health = "\n".join(Run.open(run_dir).health().describe())
    assert "`afos check --repair '$HOME; touch pwned'`" in health


def test_the_resume_hint_of_a_stopped_search_is_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = _small_run(Path(HOSTILE))

    class Stopping(FakeTraining):  # one Ctrl-C during the first training
        pressed = False

        def evaluate_seed(self, candidates, seed, epochs=None):
            if not self.pressed:
                self.pressed = True
                os.kill(os.getpid(), signal.SIGINT)
            return super().evaluate_seed(candidates, seed, epochs)

    with pytest.raises(driver.SearchInterruptedError) as err:
        driver.resume(run_dir, generations=2, evaluator=Stopping(), describe=fake_describe)
    assert str(err.value).endswith("resume with: afos resume '$HOME; touch pwned'"), str(err.value)
