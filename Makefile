# The two commands of the README: `make repro` (pipeline on the embedded default) and `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: repro test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade --quiet pip
	$(VENV)/bin/pip install --quiet -e '.[test,mtl,ray]'
	touch $(STAMP)

# The stages' commands (dvc.yaml) run `python`: the environment's, put first on PATH (a fresh shell's
# `python` has no torch). `make repro JOBS=2`: the ready stages 2 at a time (taskonomy repro --jobs 2).
repro: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(if $(JOBS),$(VENV)/bin/taskonomy repro --jobs $(JOBS),$(VENV)/bin/dvc repro)

# The renderer's tests again with every library's AVX-512 kernels turned off: its bytes and its exact
# comparisons must hold on AVX2 machines too (docs/bank-format.md, "Determinism")
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" NUMBA_CPU_NAME=haswell

test: $(STAMP)
	$(VENV)/bin/python -m pytest
	$(AVX2_ONLY) $(VENV)/bin/python -m pytest -q tests/test_render.py tests/test_domain.py
