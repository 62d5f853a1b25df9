"""A validation's verdict belongs to the front it judged, and its statistics are named where they are shown.

The run directories are copies of ``fixtures/fake_v1`` (its front: x**2 at rank 1, tanh(x) at rank 2) with a
``validation.csv`` written here, so that no test trains anything.
"""

import shutil
from pathlib import Path

import pytest

from afos import export
from afos.cli import main
from afos.cli.commands import _finish_search
from afos.ga.front import FrontEntry
from afos.run.rundir import PARETO, VALIDATION, Run
from afos.study import report
from afos.study.verdict import judge

FAKE_V1 = Path(__file__).parent / "fixtures" / "fake_v1"
RUN_V1 = Path(__file__).parent / "fixtures" / "run_v1"  # validated by an earlier afos (no Holm, no verdict)
STALE_NOTE = "validated before the front changed; run `afos validate` again"
UNSURE_NOTE = "cannot tell whether this validation judged the front as it is now"


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


def _change_front(run_dir: Path, *lines: str) -> None:
    """The front a resume left: ``lines`` of pareto.csv in place of the validated ones."""
    header = (run_dir / PARETO).read_text().splitlines()[0]
    (run_dir / PARETO).write_text("\n".join([header, *lines]) + "\n")


NEW_BEST = "sin(x),0.71,2,0.6,4,0123456789abcdef,sin(x),0.01,4"  # more accurate than both validated functions
X2 = "x**2,0.6603,3,0.66985,1,6a103499810b6818,\"mul(x, x)\",0.18254369339968993,4"
TANH = "tanh(x),0.65925,2,0.670375,0,160dac239a306eb6,tanh(x),0.19597839166602016,4"


def _show(run_dir, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "240")  # whole table rows, one per line
    assert main(["show", str(run_dir)]) == 0
    return capsys.readouterr().out


# --- item 3: a verdict is tied to the front it judged ----------------------------------------------------------


def test_standing_compares_what_was_validated_with_the_front_now():
    from afos.study.verdict import CURRENT, STALE, UNSURE, judged_rows, standing

    rows = judge([_row("front#1", "front rank 1", "x**2"), _row("front#2", "front rank 2", "tanh(x)"),
                  _row("relu", "anchor", "max(x, 0)", 0.0, 1.0)])
    assert standing(rows, ["x**2", "tanh(x)", "sin(x)"]).state == CURRENT  # a new function below the validated
    assert standing(rows, ["x*x", "tanh(x)"]).state == CURRENT  # the same function in another spelling
    moved = standing(rows, ["tanh(x)", "x**2"])
    assert moved.state == STALE and moved.ranks == {"front#1": 2, "front#2": 1}
    assert moved.note("front#1") == "now rank 2 of the front"
    gone = standing(rows, ["sin(x)", "tanh(x)"])
    assert gone.state == STALE and gone.note("front#1") == "no longer on the front"
    assert gone.headline().startswith(STALE_NOTE) and "front#1 no longer on the front" in gone.headline()
    new_best = standing(rows, ["sin(x)", "x**2", "tanh(x)"])
    assert new_best.state == STALE and "rank 1 was not validated" in new_best.reason
    two_new = standing(rows, ["sin(x)", "cos(x)", "x**2", "tanh(x)"])
    assert two_new.reason == "the front's ranks 1 and 2 were not validated"
    # a file that names no comparable expression cannot tell, and says so rather than claim either way
    blind = standing([{**r, "expression": ""} for r in rows], ["x**2", "tanh(x)"])
    assert blind.state == UNSURE and blind.headline().startswith(UNSURE_NOTE)
    assert standing([{**r, "expression": "x +* 2"} for r in rows], ["x**2"]).state == UNSURE
    assert [r["activation"] for r in judged_rows(rows, "x*x")] == ["front#1"]
    assert judged_rows(rows, "max(x, 0)") == []  # an anchor is no function of the front


def test_show_and_the_closing_lines_say_a_verdict_judged_an_earlier_front(tmp_path, capsys, monkeypatch):
    run_dir = _validated(tmp_path)
    _change_front(run_dir, NEW_BEST, X2, TANH)  # a resume found a better function than both validated ones
    out = _show(run_dir, capsys, monkeypatch)
    first = out.splitlines()[0]
    assert first.startswith("Validated before the front changed; run `afos validate` again")
    assert "the front's rank 1 was not validated" in first
    assert "front#1 x**2: " in out and "now rank 2 of the front" in out and "now rank 3 of the front" in out
    # the new best is still compared with the anchors, and told what to do next
    closing = out.rstrip().splitlines()[-1]
    assert closing.startswith("best of the front sin(x) (0.7100) beats the best anchor leaky_relu (0.6897)")
    assert STALE_NOTE in closing
    assert _finish_search(run_dir) == 0  # what `afos resume` and `afos search` end with
    assert capsys.readouterr().out == out


def test_a_function_no_longer_on_the_front_is_named_so(tmp_path, capsys, monkeypatch):
    run_dir = _validated(tmp_path)
    _change_front(run_dir, NEW_BEST, TANH)
    out = _show(run_dir, capsys, monkeypatch)
    assert out.startswith("Validated before the front changed") and "front#1 no longer on the front" in out
    verdict_line = next(line for line in out.splitlines() if "front#1 x**2:" in line)
    assert verdict_line.endswith("; no longer on the front")


def test_a_current_validation_leads_as_before(tmp_path, capsys, monkeypatch):
    run_dir = _validated(tmp_path)
    _change_front(run_dir, X2, TANH, "sin(x),0.5,9,0.9,4,0123456789abcdef,sin(x),0.01,4")  # below the validated
    out = _show(run_dir, capsys, monkeypatch)
    assert out.startswith("Verdict on the test split (afos validate: seeds 1000 1001 1002, 1 epoch):")
    assert "front changed" not in out and "now rank" not in out
    assert "on validation accuracy" not in out  # the search's hint gives way to the verdict of its best


def test_an_earlier_afos_validation_still_shows_and_says_what_it_cannot_tell(tmp_path, capsys, monkeypatch):
    run_dir = shutil.copytree(RUN_V1, tmp_path / "run")
    assert _show(run_dir, capsys, monkeypatch).startswith("Verdict on the test split")  # its front did not change
    # an expression this afos no longer reads (a primitive of another version): neither 'current' nor 'stale'
    text = (run_dir / VALIDATION).read_text()
    (run_dir / VALIDATION).write_text(text.replace("front rank 1,x**2,", "front rank 1,softexp(x),"))
    out = _show(run_dir, capsys, monkeypatch)
    assert out.startswith("Cannot tell whether this validation judged the front as it is now")
    assert "front#1" in out and "UNDECIDED" in out  # what it measured is still shown


def test_the_report_says_its_verdict_judged_an_earlier_front(tmp_path):
    run_dir = _validated(tmp_path)
    _change_front(run_dir, NEW_BEST, X2, TANH)
    blocks, _ = report.run_report(run_dir)
    texts = [b[1] for b in blocks.blocks if b[0] == "p"]
    at = [b[:2] for b in blocks.blocks].index(("h2", "Verdict on the test split"))
    assert blocks.blocks[at + 1][1].startswith("Validated before the front changed; run `afos validate` again")
    assert any(t.startswith("front#1 x**2: ") and t.endswith("; now rank 2 of the front") for t in texts)


def test_an_export_of_a_function_found_after_the_validation_says_it_has_no_verdict(tmp_path):
    run_dir = _validated(tmp_path)
    _change_front(run_dir, NEW_BEST, X2, TANH)
    doc = export.export_source("numpy", run_dir=str(run_dir), top=2).split('"""')[1]
    first, second = doc.split("activation_2:")
    assert "Verdict on the test split: none; validated before the front changed; run `afos validate` again" in first
    assert "Verdict on the test split (cnn-small/digits, 3 seeds, 1 epoch): undecided" in second
    # a validated front that did not change: a function below the validated top was simply not judged
    run_dir = _validated(tmp_path / "b", front=(("x**2", 0.25),))
    doc = export.export_source("numpy", run_dir=str(run_dir), rank=2).split('"""')[1]
    assert "Verdict on the test split: none; `afos validate` did not judge this function" in doc


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
