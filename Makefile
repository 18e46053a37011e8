# livesim: the two commands are `make demo` and `make test`; both create/update .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
export QT_QPA_PLATFORM ?= offscreen

.PHONY: venv test lint demo clean gpu-check gpu-wheels install-check

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

# livesim installed as a wheel into a fresh venv, then demo and bench all from an empty folder
# (scripts/install_check.sh; several minutes, not part of `make test`)
install-check:
	PY=$(PY) TORCH_PIN=$(TORCH_PIN) scripts/install_check.sh

clean:
	rm -rf $(VENV) build *.egg-info

# The prepared GPU check (docs/benchmarks.md, "GPU check"): GPU tests, DFCAN-SIM 9x512x512,
# CuPy preprocessing, Wiener, the pipeline with a GPU worker; JSON to $(GPU_JSON).
# On the GPU machine (its python3 has torch with CUDA; no network):  make gpu-check
#   the wheels its image lacks come from $(GPU_WHEELS), filled here beforehand by `make gpu-wheels`.
# Rehearsal on the CPU (what CI runs):  make gpu-check ARGS=--dry-run
DRY_RUN := $(findstring --dry-run,$(ARGS))
GPU_PY ?= $(if $(DRY_RUN),$(BIN)/python,python3)
GPU_WHEELS ?= .whl
GPU_SITE ?= /tmp/livesim-gpu-site
GPU_JSON ?= $(if $(OUT),$(OUT)/gpu_check.json,gpu_check.json)
GPU_WHEEL_PLATFORMS := $(foreach n,28 27 17,--platform manylinux_2_$(n)_x86_64) \
	--platform manylinux2014_x86_64 --platform manylinux1_x86_64

gpu-check: $(if $(DRY_RUN),venv)
	@if [ -z "$(DRY_RUN)" ] && ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then \
		$(GPU_PY) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
			--upgrade --target $(GPU_SITE) $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(CURDIR):$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) -m acquisition.cli \
		bench gpu --json $(GPU_JSON) --overwrite $(if $(wildcard $(GPU_WHEELS)/*.whl),--wheels $(GPU_WHEELS)) $(ARGS)

# Wheels (CPython 3.12, x86-64 Linux) of every run-time dependency the GPU image lacks.
gpu-wheels: venv
	mkdir -p $(GPU_WHEELS)
	PYTHONPATH=$(CURDIR) $(BIN)/python -m acquisition.cli bench gpu --list-wheels \
		> $(GPU_WHEELS)/requirements.txt
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_WHEEL_PLATFORMS) -d $(GPU_WHEELS) \
		-r $(GPU_WHEELS)/requirements.txt
