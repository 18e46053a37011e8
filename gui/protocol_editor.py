"""Protocol editing: channels (laser line, power, exposure, photon-budget autopilot), mode,
interval, time points, ROI, reconstruction, IMC-SR, output; load/save as TOML (the format
`livesim run` reads).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import tomli_w
from pyqtgraph.Qt import QtCore, QtWidgets

from acquisition.protocol import Protocol, ProtocolError
from settings_file import read_toml

logger = logging.getLogger(__name__)

MAX_CHANNELS = 4
# "auto": per set DFCAN-SIM or Wiener SIM by domain and photon count (docs/trust.md)
RECONSTRUCTIONS = {"auto": "auto", "DFCAN-SIM": "dfcan-sim",
                   "DFGAN-SIM": "dfgan-sim", "DFCAN-SISR": "dfcan-sisr", "Wiener": "wiener",
                   "none": "none"}
MODES = {"SIM": "sim", "WF": "wf"}
DEFAULT_LINES_NM = (405, 488, 560, 640)
DEFAULT_AUTOPILOT_TARGET = 2.0  # SR error <= 2x the reconstruction's noiseless floor


def unique_output(folder: Path, stem: str) -> Path:
    """A run-file path in ``folder`` that does not exist yet: ``stem_YYYYmmdd-HHMMSS[_n].h5``."""
    base = f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
    path = folder / f"{base}.h5"
    n = 1
    while path.exists():
        path = folder / f"{base}_{n}.h5"
        n += 1
    return path


def protocol_to_toml(data: dict[str, Any]) -> str:
    """TOML text of a protocol mapping; unset fields (None) are left out: TOML has no null."""
    return tomli_w.dumps(_without_none(data))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


class ProtocolEditor(QtWidgets.QGroupBox):
    """Widgets for every protocol field; ``plan_changed`` fires on power/exposure edits (live
    view applies them without a restart), ``pipeline_changed`` on edits that restart live view
    (channels, laser lines, mode, reconstruction, IMC-SR, ROI). The autopilot boxes emit
    neither: the autopilot steers recordings only, so they never restart live view."""

    plan_changed = QtCore.Signal()
    pipeline_changed = QtCore.Signal()

    def __init__(self, lines_nm: tuple[int, ...] = DEFAULT_LINES_NM,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Protocol", parent)
        self.lines_nm = lines_nm
        grid = QtWidgets.QGridLayout(self)
        grid.setVerticalSpacing(3)
        for col, heading in enumerate(("on", "laser", "power", "exposure", "autopilot")):
            grid.addWidget(QtWidgets.QLabel(heading), 0, col)
        self.enabled: list[QtWidgets.QCheckBox] = []
        # per channel: the photon-budget autopilot (docs/autopilot.md), on/off and its target;
        # the settings a loaded protocol gave (limits, margins, error model) are kept as they
        # were and only target_error follows the box
        self.autopilots: list[QtWidgets.QCheckBox] = []
        self.autopilot_targets: list[QtWidgets.QDoubleSpinBox] = []
        self._autopilot_settings: list[dict[str, Any]] = [
            {"target_error": DEFAULT_AUTOPILOT_TARGET} for _ in range(MAX_CHANNELS)]
        self.lasers: list[QtWidgets.QComboBox] = []
        self.powers: list[QtWidgets.QDoubleSpinBox] = []
        self.exposures: list[QtWidgets.QDoubleSpinBox] = []
        for row in range(MAX_CHANNELS):
            on = QtWidgets.QCheckBox(toolTip=f"channel {row + 1} on")
            laser = QtWidgets.QComboBox()
            laser.addItems([f"{n} nm" for n in lines_nm])
            laser.setCurrentIndex(min(row + 1, len(lines_nm) - 1) if row == 0 else
                                  row % len(lines_nm))
            # Qt properties as keyword arguments, applied in order (range before value)
            power = QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=100.0, suffix=" %", value=20.0)
            exposure = QtWidgets.QDoubleSpinBox(minimum=0.1, maximum=10_000.0, suffix=" ms",
                                                value=10.0)
            autopilot = QtWidgets.QCheckBox(toolTip=(
                f"channel {row + 1}: photon-budget autopilot for recordings (the least light "
                "that keeps the SR error within the target; set between time points)"))
            target = QtWidgets.QDoubleSpinBox(
                decimals=3, minimum=0.001, maximum=100.0, singleStep=0.1,
                value=DEFAULT_AUTOPILOT_TARGET, prefix="≤ ", enabled=False,
                toolTip="autopilot target_error: the SR error to stay within, in the error "
                "model's unit (default model: error / the reconstruction's noiseless floor)")
            autopilot.toggled.connect(target.setEnabled)
            target.valueChanged.connect(
                lambda value, i=row: self._autopilot_settings[i].update(target_error=value))
            ap_box = QtWidgets.QHBoxLayout()
            ap_box.setSpacing(2)
            ap_box.addWidget(autopilot)
            ap_box.addWidget(target, 1)
            for col, widget in enumerate((on, laser, power, exposure)):
                grid.addWidget(widget, row + 1, col)
            grid.addLayout(ap_box, row + 1, 4)
            self.autopilots.append(autopilot)
            self.autopilot_targets.append(target)
            power.valueChanged.connect(lambda _value: self.plan_changed.emit())
            exposure.valueChanged.connect(lambda _value: self.plan_changed.emit())
            on.toggled.connect(lambda _on: self.pipeline_changed.emit())
            laser.currentIndexChanged.connect(lambda _index: self.pipeline_changed.emit())
            self.enabled.append(on)
            self.lasers.append(laser)
            self.powers.append(power)
            self.exposures.append(exposure)
        self.enabled[0].setChecked(True)

        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(list(MODES))
        self.reconstruction = QtWidgets.QComboBox()
        self.reconstruction.addItems(list(RECONSTRUCTIONS))
        self.reconstruction.setCurrentText("auto")  # the protocol default
        self.reconstruction.setToolTip("auto: per set DFCAN-SIM inside its training domain and "
                                       "photon range, else Wiener SIM (the reason is shown)")
        self.imc = QtWidgets.QCheckBox("IMC-SR three-colour split")
        self.interval_s = QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=86_400.0, suffix=" s")
        self.timepoints = QtWidgets.QSpinBox(minimum=1, maximum=10_000_000, value=100)
        self.roi_x, self.roi_y = (
            QtWidgets.QSpinBox(minimum=0, maximum=8192, prefix=name, suffix=" px",
                               toolTip="ROI offset on the sensor") for name in ("x ", "y "))
        self.roi_width, self.roi_height = (
            QtWidgets.QSpinBox(minimum=8, maximum=8192, singleStep=16, value=128, suffix=" px")
            for _ in range(2))
        self.folder = QtWidgets.QLineEdit(str(Path.home() / "livesim"))
        self.folder_button = QtWidgets.QPushButton("…", toolTip="choose the folder for run files",
                                                   maximumWidth=32)
        self.folder_button.clicked.connect(self.choose_folder)
        self.stem = QtWidgets.QLineEdit("run")
        self.reconstruction.currentTextChanged.connect(self._match_mode)
        for signal in (self.mode.currentIndexChanged, self.reconstruction.currentIndexChanged,
                       self.imc.toggled, self.roi_width.valueChanged,
                       self.roi_height.valueChanged, self.roi_x.valueChanged,
                       self.roi_y.valueChanged):
            signal.connect(lambda *_args: self.pipeline_changed.emit())
        form = QtWidgets.QFormLayout()
        form.setHorizontalSpacing(10)  # labels never touch their fields
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("mode", self.mode)
        form.addRow("reconstruction", self.reconstruction)
        form.addRow("", self.imc)
        form.addRow("interval", self.interval_s)
        form.addRow("time points", self.timepoints)
        roi = QtWidgets.QHBoxLayout()
        roi.addWidget(self.roi_width)
        roi.addWidget(QtWidgets.QLabel("×"))
        roi.addWidget(self.roi_height)
        form.addRow("ROI", roi)
        offset = QtWidgets.QHBoxLayout()
        offset.addWidget(self.roi_x)
        offset.addWidget(self.roi_y)
        form.addRow("ROI offset", offset)
        folder = QtWidgets.QHBoxLayout()
        folder.addWidget(self.folder, 1)
        folder.addWidget(self.folder_button)
        form.addRow("folder", folder)
        form.addRow("file name", self.stem)
        grid.addLayout(form, MAX_CHANNELS + 1, 0, 1, 5)

    def choose_folder(self) -> str:
        """Pick the run-file folder with the desktop's folder dialog ('' when cancelled)."""
        name = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for run files",
                                                         self.folder.text())
        if name:
            self.folder.setText(name)
        return str(name)

    def channel_names(self) -> list[str]:
        """The enabled channels by laser line, e.g. ['488 nm', '560 nm'] (display order)."""
        return [self.lasers[i].currentText() for i in range(MAX_CHANNELS)
                if self.enabled[i].isChecked()] or [self.lasers[0].currentText()]

    def set_reconstruction(self, method: str) -> None:
        """Select a reconstruction by its protocol value (e.g. 'wiener', 'dfcan-sim')."""
        names = {v: k for k, v in RECONSTRUCTIONS.items()}
        method = "auto" if method == "default" else method  # the protocol default
        if method not in names:
            raise ProtocolError(f"field 'reconstruction' = {method!r}: the panel offers "
                                f"{list(RECONSTRUCTIONS.values())}")
        self.reconstruction.setCurrentText(names[method])
        self._match_mode(names[method])  # also when it was selected already (no signal)

    def _match_mode(self, choice: str) -> None:
        """DFCAN-SISR reconstructs one wide-field frame; the SIM models need SIM sets."""
        if choice == "DFCAN-SISR":
            self.mode.setCurrentText("WF")
        elif RECONSTRUCTIONS[choice] in ("auto", "dfcan-sim", "dfgan-sim", "wiener") \
                and self.mode.currentText() == "WF":
            self.mode.setCurrentText("SIM")

    # --- protocol <-> widgets -----------------------------------------------------------------

    def protocol_data(self, output: Path | None = None) -> dict[str, Any]:
        """The protocol as a mapping (validate with :meth:`protocol`)."""
        method = RECONSTRUCTIONS[self.reconstruction.currentText()]
        channels: list[dict[str, Any]] = []
        for i in range(MAX_CHANNELS):
            if not self.enabled[i].isChecked():
                continue
            channel: dict[str, Any] = {
                "laser_nm": self.lines_nm[self.lasers[i].currentIndex()],
                "power_pct": round(self.powers[i].value(), 3),
                "exposure_ms": round(self.exposures[i].value(), 3),
                "reconstruction": method}
            if self.autopilots[i].isChecked():
                channel["autopilot"] = dict(self._autopilot_settings[i])
            channels.append(channel)
        folder = Path(self.folder.text()).expanduser()
        return {"channels": channels, "mode": MODES[self.mode.currentText()],
                "timepoints": self.timepoints.value(), "interval_s": self.interval_s.value(),
                "roi": {"x": self.roi_x.value(), "y": self.roi_y.value(),
                        "width": self.roi_width.value(),
                        "height": self.roi_height.value()},
                "imc": self.imc.isChecked(),
                "output": str(output or unique_output(folder, self.stem.text() or "run"))}

    def protocol(self, output: Path | None = None) -> Protocol:
        """The validated protocol (ProtocolError names the field and value)."""
        return Protocol.parse_checked(self.protocol_data(output), source="protocol panel")

    def set_protocol(self, data: dict[str, Any]) -> None:
        """Show a protocol mapping (e.g. loaded from TOML) in the widgets."""
        channels = data.get("channels", [])
        if not 1 <= len(channels) <= MAX_CHANNELS:
            raise ProtocolError(f"field 'channels': {len(channels)} channels, the panel shows "
                                f"1 to {MAX_CHANNELS}")
        methods = {v: k for k, v in RECONSTRUCTIONS.items()}
        for i in range(MAX_CHANNELS):
            self.enabled[i].setChecked(i < len(channels))
            if i >= len(channels):
                continue
            c = channels[i]
            laser = int(c["laser_nm"])
            if laser not in self.lines_nm:
                raise ProtocolError(f"field 'channels.{i}.laser_nm' = {laser}: the rig has "
                                    f"lines {list(self.lines_nm)}")
            self.lasers[i].setCurrentIndex(self.lines_nm.index(laser))
            self.powers[i].setValue(float(c.get("power_pct", 20.0)))
            self.exposures[i].setValue(float(c.get("exposure_ms", 10.0)))
            autopilot = c.get("autopilot")
            if autopilot is not None and not isinstance(autopilot, dict):
                raise ProtocolError(f"field 'channels.{i}.autopilot' = {autopilot!r}: a table "
                                    "such as { target_error = 2.0 }")
            self.set_autopilot(i, autopilot)
            method = str(c.get("reconstruction", "auto"))
            method = "auto" if method == "default" else method  # the protocol default
            if method in methods:
                self.reconstruction.setCurrentText(methods[method])
        modes = {v: k for k, v in MODES.items()}
        mode = str(data.get("mode", "sim"))
        if mode not in modes:
            raise ProtocolError(f"field 'mode' = {mode!r}: the panel offers {list(MODES.values())}")
        self.mode.setCurrentText(modes[mode])
        self.timepoints.setValue(int(data.get("timepoints", 100)))
        self.interval_s.setValue(float(data.get("interval_s", 0.0)))
        self.imc.setChecked(bool(data.get("imc", False)))
        roi = data.get("roi")
        if isinstance(roi, dict):
            self.roi_x.setValue(int(roi.get("x", 0)))
            self.roi_y.setValue(int(roi.get("y", 0)))
            self.roi_width.setValue(int(roi["width"]))
            self.roi_height.setValue(int(roi["height"]))
        output = data.get("output")
        if output:
            path = Path(str(output))
            self.folder.setText(str(path.parent))
            self.stem.setText(path.stem)

    def set_autopilot(self, channel: int, settings: dict[str, Any] | None) -> None:
        """Show a channel's autopilot table (None: off). Every setting is kept as given (the
        box shows target_error; the table keeps it exactly), so a protocol loaded and saved
        again carries the same autopilot."""
        if settings is not None:
            kept = dict(settings)
            target = self.autopilot_targets[channel]
            kept.setdefault("target_error", target.value())
            self._autopilot_settings[channel] = kept
            target.blockSignals(True)
            target.setValue(float(kept["target_error"]))
            target.blockSignals(False)
        self.autopilots[channel].setChecked(settings is not None)

    def load_toml(self, path: Path) -> None:
        """Load a protocol TOML; the run file name becomes a fresh one next to its output."""
        data = read_toml(path, "protocol", ProtocolError)
        output = Path(str(data.get("output", "run.h5")))
        if not output.is_absolute():
            output = path.parent / output
        data["output"] = str(unique_output(output.parent, output.stem))
        Protocol.parse_checked(data, source=str(path))  # every field checked before we show it
        self.set_protocol(data)

    def save_toml(self, path: Path) -> None:
        """Write the current protocol as TOML (readable by `livesim run`)."""
        data = self.protocol().model_dump(mode="json")
        path.write_text(protocol_to_toml(data))

    def set_editable_while_recording(self, recording: bool) -> None:
        """During a recording nothing changes what the file says it holds."""
        self.setEnabled(not recording)
