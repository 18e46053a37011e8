#!/usr/bin/env bash
# `make install-check`: livesim as a user gets it. A fresh venv in a temporary folder, the
# project installed from a copy of this tree as a wheel (not editable; torch pinned as in
# `make venv`), then, from an empty folder, `livesim --version`, `livesim demo` (small, same
# path: emulator -> core -> ZeroMQ -> worker with the bundled DFCAN-SIM -> HDF5) and
# `livesim bench all --json out.json`, whose JSON must parse and name every benchmark stage.
# Any step that fails stops the check with its name. KEEP=1 keeps the temporary folder.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
EXTRAS=${EXTRAS:-gui,onnx,napari}
# the stages of `livesim bench all` (acquisition/cli/bench/all_benchmarks.py, run_all)
STAGES="emulator camera transport recorder preprocessing inference wiener imc-sr pipeline gui"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livesim-install-check.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "install-check: keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
started=$(date +%s)
step() { echo "install-check: $* ($(($(date +%s) - started)) s)"; }
fail() { echo "install-check: FAILED: $*" >&2; exit 1; }

step "copying the tracked and unignored files of $SRC (no build output lands in the checkout)"
mkdir "$WORK/src" "$WORK/run"
git -C "$SRC" ls-files -z -co --exclude-standard \
    | tar -C "$SRC" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$WORK/src" -xf -

step "fresh venv, $TORCH_PIN, livesim[$EXTRAS] (not editable)"
"$PY" -m venv "$WORK/venv"
BIN=$WORK/venv/bin
"$BIN/python" -m pip install -q --upgrade pip || fail "pip upgrade"
"$BIN/python" -m pip install -q "$TORCH_PIN" || fail "pip install $TORCH_PIN"
"$BIN/python" -m pip install -q "$WORK/src[$EXTRAS]" "$TORCH_PIN" || fail "pip install livesim"
rm -rf "$WORK/src"  # nothing may be read from a source tree from here on

cd "$WORK/run"
export QT_QPA_PLATFORM=offscreen
unset PYTHONPATH
location=$("$BIN/python" -c "import acquisition; print(acquisition.__file__)")
case "$location" in "$WORK/venv/"*) ;; *) fail "acquisition imported from $location" ;; esac

step "livesim --version"
"$BIN/livesim" --version || fail "livesim --version"

step "livesim demo (2 time points, 64 px)"
"$BIN/livesim" demo --time-points 2 --size-px 64 --output demo.h5 || fail "livesim demo"
[ -s demo.h5 ] || fail "livesim demo wrote no demo.h5"

step "livesim bench all --json out.json (quick sizes)"
"$BIN/livesim" bench all --json out.json || fail "livesim bench all"

"$BIN/python" - "$STAGES" <<'EOF' || fail "out.json"
import json
import sys

report = json.load(open("out.json"))
stages = sys.argv[1].split()
measured = {figure["section"] for figure in report["figures"]}
missing = [s for s in stages if s not in measured]
if report["failures"] or missing:
    sys.exit(f"out.json: failures {report['failures']}, no figures for {missing}")
print(f"out.json: {len(report['figures'])} figures from {len(stages)} stages: {' '.join(stages)}")
EOF
# what the commands were asked to write, and the demo worker's log beside its run file
stray=$(ls -A . | grep -v -x -e demo.h5 -e demo.worker.log -e out.json || true)
[ -z "$stray" ] || fail "files nobody asked for in the run folder: $stray"
step "passed"
