"""livesim gui: the live-session window (pyqtgraph; PySide6 by default, PyQt6 via pyqtgraph.Qt).

Public API: ``gui.app.run_gui(GuiOptions)`` (what `livesim gui` runs),
``gui.main_window.LiveWindow`` (the window, given a ``gui.host_link.HostLink`` and a QSettings),
``HostLink.start(HostOptions)`` (starts the acquisition process
``python -m acquisition.cli.gui_host``)
or ``HostLink(None, endpoint)`` (read-only on any display stream), and
``acquisition.cli.bench.display.run_display_bench`` (`livesim bench gui`).
"""
