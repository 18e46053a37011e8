"""Benchmarks (`livesim bench ...`): all of them live in this folder, beside the CLI."""
