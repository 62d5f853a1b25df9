"""Benchmark presets (TOML), installed as ``afos.presets``; see ``afos.study.presets``."""
