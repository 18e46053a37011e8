"""livesim hardware: the SIM rig on a Micro-Manager core (pymmcore-plus UniMMCore).

Public API: `hardware.rig.Rig` (from_config, from_studio; acquire_time_point,
stream_time_point, stream, snap, check_plan), `hardware.sequencing` (ChannelSpec,
SequencePlan), `hardware.frames` (FrameTag, TaggedFrame), `hardware.roles` (RoleMap, roles),
`hardware.errors`, `hardware.conformance`. Nothing is imported here, so `import hardware`
stays cheap.
"""
