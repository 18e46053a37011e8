# livesim: the two commands are `make demo` and `make test`; both create/update .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
export QT_QPA_PLATFORM ?= offscreen

.PHONY: venv test lint demo clean

venv: $(STAMP)

# Re-install only when the dependency list changes; torch is pinned to the local CPU wheel
# first so that no package can pull the CUDA build. The napari extra is installed so that the
# plugin's tests (npe2 discovery, a run file opened headless) run in CI.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev,gui,onnx,napari]" "$(TORCH_PIN)"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv lint
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/livesim demo --output demo_run.h5

clean:
	rm -rf $(VENV) build *.egg-info
