"""livesim: sim_emulator package."""
