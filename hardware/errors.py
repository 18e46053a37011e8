"""Errors raised by the rig: each names the device, the property or the count involved."""

from __future__ import annotations


class RigError(RuntimeError):
    """Base class for every failure of the rig or its devices."""


class ConfigError(RigError):
    """A Micro-Manager .cfg (or role map) is wrong; names the file, line number and text."""


class CapabilityError(RigError):
    """A device cannot do what was asked (e.g. a property that is not sequenceable)."""


class AcquisitionTimeout(RigError):  # noqa: N818 (name fixed by the contract)
    """A wait ran past its timeout; names what was expected and what arrived."""


class SequenceMismatch(RigError):  # noqa: N818 (name fixed by the contract)
    """Frames or device positions disagree with the plan; names expected vs arrived."""


class InvalidSettingError(RigError, ValueError):
    """A property value out of range or not allowed; names device, property and value."""


class BufferOverflow(RigError):  # noqa: N818 (reads as the event it names)
    """The camera's circular buffer filled before frames were read; names camera and size."""
