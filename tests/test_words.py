"""The words module: text read from a run's files is shown as it is by one function, ``printable``, that show,
report, figures and export all use."""

import pytest

from afos.words import printable


@pytest.mark.parametrize("text, shown", [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # a terminal escape sequence acts on nothing
    ("a\x00b", "a\\x00b"),
    ("one\u2028two", "one\\u2028two"),  # a line separator, which some editors and browsers break lines at
    ("one\ntwo\r\tthree", "one\\ntwo\\r\\tthree"),
    ("±0.5 é ß 漢 →", "±0.5 é ß 漢 →"),  # ordinary unicode is kept
    ("$x$ | <b> \\frac", "$x$ | <b> \\frac"),  # printable syntax is each caller's to escape
])
def test_printable_writes_control_characters_as_escapes_and_keeps_the_rest(text, shown):
    assert printable(text) == shown


def test_printable_keeps_what_it_is_told_to_and_takes_any_value():
    assert printable("a\tb\x1b", keep="\t") == "a\tb\\x1b"
    assert printable(3) == "3" and printable(None) == "None"


def test_every_place_that_shows_a_files_text_uses_it():
    from afos.cli.display import shown
    from afos.export.items import header
    from afos.study.plots import plain
    from afos.study.stats import markdown_fence

    text = "relu\x1b[2J\x00\u2028±é"
    assert shown(text).plain == printable(text)
    assert plain(text + "$") == printable(text) + "\\$"
    line = "relu\x1b[2J\x00±é"  # a fence keeps the lines of a text (\u2028 too), and the tab
    assert markdown_fence(line + "\tx") == f"```\n{printable(line)}\tx\n```"
    assert f"exported for {printable(text)}." in header([], text)
