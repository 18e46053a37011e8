"""livesim: hardware package."""
