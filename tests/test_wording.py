"""What afos prints reads as English: counts agree with their nouns, generation 0 is the initial one, every
positional argument says what it is (issue 26, item 9)."""

import argparse

import pytest
from fakes import FakeTraining

import afos
from afos import config as config_lib
from afos.cli.display import RichReporter
from afos.cli.parser import build_parser
from afos.words import plural


@pytest.mark.parametrize("count, noun, text", [(0, "seed", "0 seeds"), (1, "seed", "1 seed"), (1, "epoch", "1 epoch"),
                                               (2, "epoch", "2 epochs"), (1, "entry", "1 entry"),
                                               (3, "entry", "3 entries"), (2, "child", "2 children")])
def test_plural_agrees_with_the_count(count, noun, text):
    assert plural(count, noun) == text


class Messages:
    def __init__(self):
        self.lines = []

    def generation_started(self, generation, size):
        pass

    def evaluated(self, line):
        pass

    def generation_finished(self, generation, front):
        pass

    def message(self, text):
        self.lines.append(text)


def test_a_one_seed_search_says_1_seed(tmp_path):
    messages = Messages()
    afos.search(None, tmp_path / "run", messages, FakeTraining(), population=2, generations=0)
    anchors = [line for line in messages.lines if line.startswith("anchor ")]
    assert anchors and all(line.endswith(" on 1 seed") for line in anchors), anchors


def test_generation_0_is_the_initial_one_not_0_of_0(capsys):
    for generations in (0, 3):
        reporter = RichReporter(generations, "search")
        reporter.generation_started(0, 2)
        reporter.close()
    assert capsys.readouterr().err.splitlines() == ["gen 0 (initial) 0/2 trained 0 cached 0 rejected 0 failed 0 "
                                                    "best - 0:00:00"] * 2


def test_the_plan_says_what_its_pixels_are():
    from afos.fitness import plan

    settings = config_lib.FitnessSettings(model="cnn-small", batch_size=32)
    backend, why = plan.choose_backend(settings, (8, 8, 1), 112, "cpu")
    assert (backend, why) == ("batched", "a run of 112 candidates (all its generations) on batches of 32 8x8 "
                                         "images (2048 pixels per batch) on the CPU")


def test_every_positional_argument_says_what_it_is():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    positionals = [(name, action.dest) for name, sub in commands.items() for action in sub._actions
                   if not action.option_strings and not isinstance(action, argparse._HelpAction)]
    assert len(positionals) >= 7
    for name, sub in commands.items():
        for action in sub._actions:
            if not action.option_strings:
                assert action.help, f"afos {name} {action.dest} has no help"


def test_the_progress_names_the_best_as_the_front_does_ties_to_the_simpler():
    from afos import types
    from afos.ga.front import FrontEntry
    from afos.run.records import Evaluation

    def line(index, tree, expr, complexity, acc):
        return Evaluation(0, index, tree, expr, "k", f"f{index}", complexity, types.OK, None, acc, 0.3, None, 1,
                          (acc,), 1.0)

    reporter = RichReporter(1)
    reporter.evaluated(line(0, "add(asinh(x), relu(x))", "asinh(x) + Max(0, x)", 4, 0.9652))
    reporter.evaluated(line(1, "tanh(sin(x))", "tanh(sin(x))", 3, 0.9652))  # as accurate, simpler
    reporter.evaluated(line(2, "sin(x)", "sin(x)", 2, 0.9))
    assert reporter._fields()["best"] == "0.9652 tanh(sin(x))"
    front = [FrontEntry("sin(x)", 0.9, 2, 0.3, 0, "f2", "sin(x)"),
             FrontEntry("tanh(sin(x))", 0.9652, 3, 0.3, 0, "f1", "tanh(sin(x))")]
    reporter.generation_finished(0, front)
    assert reporter._fields()["best"] == "0.9652 tanh(sin(x))"


def test_a_finished_run_says_which_generations_it_ran_and_what_goes_on(tmp_path, capsys):
    from afos.cli import main

    messages = Messages()
    run = afos.search(None, tmp_path / "run", messages, FakeTraining(), population=2, generations=1)
    afos.resume(run.path, reporter=messages, evaluator=FakeTraining())
    assert messages.lines[-1] == (f"{run.path} has run generations 0-1 (the initial population and 1 more); "
                                  "--generations 2 or more goes on")
    main(["check", str(run.path)])
    assert "checkpoint: before generation 2 (the next to run)" in capsys.readouterr().out
