"""Benchmarks (`livesim bench ...`): every one lives in this folder, beside the CLI that runs them."""
