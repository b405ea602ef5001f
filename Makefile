# sparseshift: `make demo` runs the main job, `make test` the test suite; both create .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: venv demo test test-all lint bench gpu-check clean

# torch first, pinned to the CPU wheel this machine has; the project itself asks for a range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test]"
	# Type checkers cannot follow setuptools' editable import hook: a .pth to a folder that links
	# this checkout as `sparseshift` lets mypy and pyright find the package (and its py.typed).
	mkdir -p $(VENV)/typing-path && ln -sfn "$(CURDIR)" $(VENV)/typing-path/sparseshift
	$(BIN)/python -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'sparseshift-typing.pth').write_text(str(pathlib.Path('$(VENV)/typing-path').resolve()) + '\n')"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/sparseshift demo --out out/demo

test: venv
	$(BIN)/python -m pytest

test-all: venv
	$(BIN)/python -m pytest -m "slow or not slow"

lint: venv
	$(BIN)/python -m pytest -q tests/test_quality.py

bench: venv
	$(BIN)/sparseshift bench envs
	$(BIN)/sparseshift bench collect
	$(BIN)/sparseshift bench train

# On a CUDA machine: doctor, bench train on cpu vs cuda, the quick study on cuda; timings in
# out/gpu-check/timings.txt. Without CUDA it stops at once (exit 2). See docs/agents.md.
gpu-check: venv
	$(BIN)/python -m sparseshift.experiments.bench.gpu_check --out out/gpu-check

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
