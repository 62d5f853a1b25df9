"""Counts in sentences: ``plural(1, "epoch")`` is "1 epoch", ``plural(3, "epoch")`` "3 epochs", never "1 epochs"
or "seed(s)"."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "child": "children"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` in the form that count takes; ``many``: a plural that is not ``noun + "s"``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or IRREGULAR.get(noun, noun + 's')}"
