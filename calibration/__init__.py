"""livesim: calibration package."""
