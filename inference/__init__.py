"""livesim: inference package."""
