"""livesim: acquisition package."""
