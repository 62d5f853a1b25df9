"""Output in a file or a pipe (a log): whole lines and whole names, however narrow a terminal would be
(issue 26, item 8). The command's standard output is captured here, as a pipe's: no terminal."""

import shutil
from pathlib import Path

from afos.cli import main
from afos.cli.display import anchor_verdict
from afos.run.records import validation_csv
from afos.run.rundir import VALIDATION, Run

FIXTURE = Path(__file__).parent / "fixtures" / "fake_v1"


def _row(activation: str, source: str, expression: str, mean: float, diff: str = "") -> dict:
    return {"activation": activation, "source": source, "expression": expression, "model": "cnn-small",
            "dataset": "digits", "seeds": "1000, 1001, 1002, 1003, 1004, 1005", "epochs": 5, "n": 6,
            "test_accuracy_mean": mean, "test_accuracy_std": 0.0123, "diff_vs_relu": diff,
            "diff_ci_low": diff and -0.0101, "diff_ci_high": diff and 0.0302, "wilcoxon_p": diff and 0.03125,
            "wilcoxon_p_holm": diff and 0.0625, "verdict": ""}


def test_the_closing_sentence_is_one_whole_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # what rich assumes of a pipe by default
    assert main(["show", str(FIXTURE)]) == 0
    run = Run.open(FIXTURE)
    sentence = anchor_verdict(run.front(), run.anchors())
    assert len(sentence) > 80 and sentence in capsys.readouterr().out.splitlines()


def test_the_validation_table_keeps_every_name_and_number_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    run_dir = shutil.copytree(FIXTURE, tmp_path / "run")
    front = [e.expression for e in Run.open(run_dir).ranked()]
    rows = [_row("relu", "anchor", "Max(0, x)", 0.9512), _row("front#1", "front rank 1", front[0], 0.9634, 0.0122),
            _row("front#2", "front rank 2", front[1], 0.9401, -0.0111)]
    (run_dir / VALIDATION).write_text(validation_csv(rows))
    assert main(["show", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if "│" in line or "┃" in line]
    header = table[-len(rows) - 1]  # the validation table's header, then its rows
    assert "test accuracy" in header and "Wilcoxon p after Holm)" in header
    for row, line in zip(rows, table[-len(rows):], strict=True):
        assert f" {row['activation']} " in line and f" {row['test_accuracy_mean']:.4f} ± 0.0123 " in line, line
    assert f" {front[1]} " in table[-1] and all("…" not in line for line in lines)
