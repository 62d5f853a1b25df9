"""Words for people. Counts in sentences: ``plural(1, "epoch")`` is "1 epoch", ``plural(3, "epoch")`` "3 epochs",
never "1 epochs" or "seed(s)". Text read from a run's files shown as it is: ``printable`` writes its control
characters out as escapes, for a terminal, a report, a figure or a generated file alike."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "child": "children"}


def plural(count: int | str, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` in the form that count takes; ``many``: a plural that is not ``noun + "s"``. A count
    read from a file may be text: "1" is one, and text that is no count is written as it is, with the plural."""
    if count == 1 or (isinstance(count, str) and count.strip() == "1"):
        return f"{count} {noun}"
    return f"{count} {many or IRREGULAR.get(noun, noun + 's')}"


def printable(value: object, keep: str = "") -> str:
    """``value`` as text that shows as it is: every character that is not printable (an escape sequence or a NUL
    read from a file, a line break, a ``\\u2028``) written out as its escape (``\\x1b``, ``\\n``), so it neither
    acts on a terminal nor starts a line; ``keep``: characters left as they are (a report keeps the tab)."""
    return "".join(ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(value))
