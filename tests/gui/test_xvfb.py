"""Run the real-window tests (tests/gui/test_real_window.py) in a virtual X server.

The suite itself runs on Qt's offscreen platform; this starts a second pytest under
`xvfb-run` with the xcb platform, which needs the Debian packages xvfb, xauth and the xcb
libraries Qt loads (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, ...: README, .ci/run).
Without `xvfb-run` the test skips, unless LIVESIM_REQUIRE_XVFB=1 (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REAL_WINDOW_TESTS = Path(__file__).with_name("test_real_window.py")
TIMEOUT_S = 280  # below pytest-timeout's 300 s


def test_real_window_tests_pass_under_xvfb() -> None:
    if shutil.which("xvfb-run") is None:
        if os.environ.get("LIVESIM_REQUIRE_XVFB") == "1":
            pytest.fail("LIVESIM_REQUIRE_XVFB=1 but xvfb-run is not installed "
                        "(apt-get install xvfb xauth)")
        pytest.skip("xvfb-run is not installed (Debian: xvfb xauth and the xcb libraries "
                    "named in README): the real-window tests did not run")
    root = REAL_WINDOW_TESTS.parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.pop("DISPLAY", None)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, "-m",
               "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(REAL_WINDOW_TESTS)]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"real-window tests did not finish within {TIMEOUT_S} s:\n{exc.stdout}")
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " error" not in done.stdout, report
