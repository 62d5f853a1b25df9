"""Counts in sentences: ``plural(1, "epoch")`` is "1 epoch", ``plural(3, "epoch")`` "3 epochs", never "1 epochs"
or "seed(s)"."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "child": "children"}


def plural(count: int | str, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` in the form that count takes; ``many``: a plural that is not ``noun + "s"``. A count
    read from a file may be text: "1" is one, and text that is no count is written as it is, with the plural."""
    if count == 1 or (isinstance(count, str) and count.strip() == "1"):
        return f"{count} {noun}"
    return f"{count} {many or IRREGULAR.get(noun, noun + 's')}"
