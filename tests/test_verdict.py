"""A validation's statistics are named where they are shown.

The run directories are copies of ``fixtures/fake_v1`` (its front: x**2 at rank 1, tanh(x) at rank 2) with a
``validation.csv`` written here, so that no test trains anything.
"""

import shutil
from pathlib import Path

import pytest

from afos import export
from afos.cli import main
from afos.ga.front import FrontEntry
from afos.run.rundir import Run
from afos.study import report
from afos.study.verdict import judge

FAKE_V1 = Path(__file__).parent / "fixtures" / "fake_v1"


def _row(activation, source, expression, diff=0.02, p=0.25):
    return {"activation": activation, "source": source, "expression": expression, "model": "cnn-small",
            "dataset": "digits", "seeds": "1000 1001 1002", "epochs": 1, "n": 3, "test_accuracy_mean": 0.9 + diff,
            "test_accuracy_std": 0.01, "diff_vs_relu": diff, "diff_ci_low": diff - 0.01, "diff_ci_high": diff + 0.01,
            "wilcoxon_p": p}


def _validated(tmp_path, front=(("x**2", 0.25), ("tanh(x)", 0.5))) -> Path:
    """A copy of fake_v1 validated on ``front`` ((expression, Wilcoxon p) by rank), relu and gelu."""
    run_dir = shutil.copytree(FAKE_V1, tmp_path / "run")
    rows = [_row(f"front#{i}", f"front rank {i}", text, p=p) for i, (text, p) in enumerate(front, start=1)]
    rows += [_row("relu", "anchor", "max(x, 0)", 0.0, 1.0), _row("gelu", "anchor", "x*(1 + erf(x/sqrt(2)))/2")]
    Run.open(run_dir).write_validation(judge(rows))
    return run_dir


def _show(run_dir, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "240")  # whole table rows, one per line
    assert main(["show", str(run_dir)]) == 0
    return capsys.readouterr().out


# --- item 7: every statistic named, the verdict's own p-value beside it ----------------------------------------


def test_show_names_the_p_value_its_verdict_uses(tmp_path, capsys, monkeypatch):
    out = _show(_validated(tmp_path), capsys, monkeypatch)
    assert "Wilcoxon p = 0.5 after Holm" in out  # the verdict line: 0.25 corrected for 2 functions
    header = next(line for line in out.splitlines() if "activation" in line and "verdict" in line)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    row = next(line for line in out.splitlines() if line.startswith("│ front#1"))
    row = dict(zip(cells, (c.strip() for c in row.strip("│ ").split("│")), strict=True))
    assert row["vs relu (95% CI, Wilcoxon p after Holm)"] == "+0.0200 [+0.0100, +0.0300] p=0.5"


def test_the_report_and_the_export_name_both_p_values_and_the_search_proxy(tmp_path):
    run_dir = _validated(tmp_path)
    blocks, _ = report.run_report(run_dir)
    header, rows = next(b[1] for b in blocks.blocks if b[0] == "table" and "verdict" in b[1][0])
    front = dict(zip(header, rows[0], strict=True))
    assert front["Wilcoxon p after Holm"] == "0.5" and front["uncorrected p"] == "0.25"
    html = report.to_html(blocks)
    assert "<th>Wilcoxon p after Holm</th>" in html and "<th>uncorrected p</th>" in html
    doc = export.export_source("numpy", run_dir=str(run_dir), rank=1).split('"""')[1]
    assert "vs relu +0.0200 [+0.0100, +0.0300] (95% CI), Wilcoxon p = 0.5 after Holm (0.25 uncorrected)" in doc
    assert "Validation: val_accuracy" not in doc
    assert "Search proxy (mean of 4 seeds, validation split): val_accuracy 0.6603 ± 0.182544" in doc


@pytest.mark.parametrize("seeds, said", [(1, "Search proxy (one seed, validation split): val_accuracy 0.965,"),
                                         (3, "Search proxy (mean of 3 seeds, validation split): val_accuracy 0.965 "
                                             "± 0.01,")])
def test_the_search_proxy_says_how_many_seeds_it_had(seeds, said):
    from afos.export.items import Item, header
    from afos.expr import parse

    entry = FrontEntry("tanh(x)", 0.965, 2, 0.1, 3, "f", "tanh(x)", 0.01, seeds)
    lines = header([Item(parse("tanh(x)"), rank=1, entry=entry)], "NumPy").splitlines()
    assert any(line.startswith(said) for line in lines) and not any("Validation:" in line for line in lines)
