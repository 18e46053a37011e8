"""A hook around the window's display stages, for `livesim bench gui` to time them.

The window measures nothing itself: it wraps each stage in ``stage(name)``, a no-op until a
benchmark installs a timer with `set_stage_timer` (acquisition/cli/bench/display_cost.py).
Stages: ``tick`` (a control tick or a display notification, whole), ``receive``, ``raw_set``,
``sr_set``, ``full_set``, ``raw_paint`` / ``sr_paint`` (an image item's paint) and
``view_paint`` (a view's paint event, the images' paint included). A stage may run inside
itself (a tick drains the display topics): the timer decides how to count that.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

StageTimer = Callable[[str], AbstractContextManager[object]]


def _untimed(name: str) -> AbstractContextManager[object]:
    return nullcontext()


_timer: StageTimer = _untimed


def set_stage_timer(timer: StageTimer | None) -> None:
    """Install ``timer`` around every display stage (None: stop timing)."""
    global _timer
    _timer = timer or _untimed


def stage(name: str) -> AbstractContextManager[object]:
    """The context one display stage runs in."""
    return _timer(name)
