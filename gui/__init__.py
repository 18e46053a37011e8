"""livesim: gui package."""
