# Thin wrappers; each target creates the virtual environment first if needed.
#   make train            train the default model (downloads tiny-shakespeare when missing)
#   make test             run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU/CUDA build of torch that pip picks for this platform; override e.g. TORCH="torch>=2.10".
TORCH ?= torch==2.13.0
CONFIG ?= configs/shakespeare.yaml
CKPT ?= checkpoints/shakespeare/last.ckpt

.PHONY: venv train test sample

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[serve,dev]"
	touch $@

train: venv
	$(BIN)/python train.py fit --config $(CONFIG)

sample: venv
	$(BIN)/python sample.py --ckpt $(CKPT) --length 500

test: venv
	$(BIN)/python -m pytest -q
