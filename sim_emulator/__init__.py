"""livesim: sim_emulator package, the physics-based stand-in for a SIM rig.

Public entry points: ``microscope.EmulatorConfig`` / ``microscope.Microscope`` (full physics),
``fast_path.FastFrameSource`` (throughput), ``training_pairs.make_training_pair`` (training
data), ``emulated_run.write_emulated_run`` (run files). See docs/emulator.md.
"""
