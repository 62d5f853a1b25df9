"""Worked examples of the user's own objective (``--objective``), shipped with afos and registered by name."""
