# transfer: `make demo` and `make test` do all set-up themselves on a fresh Debian 12 machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TRANSFER := $(VENV)/bin/transfer
export PYTHONUNBUFFERED := 1

.PHONY: help setup deps venv test test-fast demo demo-full clean-venv
help:
	@echo "make demo    set up everything, then Figure 2 in miniature on the synthetic dataset (CPU, ~15 min)"
	@echo "make demo-full   both papers in miniature, 3 replicates a point (CPU, under an hour)"
	@echo "make demo-huh   the same for Huh et al. 2016 (label sets, budgets, readout, a target dataset)"
	@echo "make test    set up everything, check that the CUDA build links, then run the tests"
	@echo "make test-fast   the tests that need no training, Caffe binary or cluster (under a minute; builds nothing)"
	@echo "make check-gpu-build   compile and link the CUDA build (PyPI CUDA, no GPU needed; cached)"
	@echo "make test-gpu          the GPU tier on a GPU node: CUDA build, Caffe's gtest suite, numeric checks, tiny plan, timing"
	@echo "                       (TIER_DEVICE=cpu: its CPU variant; BUNDLE=archive: offline, from make node-bundle)"
	@echo "make caffe-gtest       Caffe's own gtest suite on the venv's Caffe (cached binary)"
	@echo "make node-bundle [NODE_CUDA=system] [BUNDLE_OUT=file]   one archive for a GPU node with no network or root"
	@echo "make setup   Debian packages, Caffe (cached build), .venv with pycaffe and transfer"
	@echo "make caffe   build Caffe (CAFFE_SRC=tree to build another tree, CAFFE_ROOT=dir to use a build, CAFFE_GPU=1 for CUDA)"
	@echo "make nets    regenerate prototxt/, solvers/ and splits/ for the paper's plan"
	@echo "make data IMAGENET_DIR=... [DEVKIT=...] [TRAIN_LIST=... VAL_LIST=...]   the paper's LMDBs and means"
	@echo "make train [PLAN=paper GPUS=0,1] and train-random-split, train-natman, train-whole,"
	@echo "           train-random-weights, train-reduced, train-status (PLAN=small: on the CPU)"
	@echo "make report, report-small, report-released RELEASED=dir   figures and tables"
	@echo "make bench-tools   Caffe's convert_imageset (Debian's OpenCV), the yardstick of benchmarks/bench_datasets.py"

deps:
	@scripts/install-deps.sh

# The venv is rebuilt when the pins change; transfer itself is installed editable. From a node bundle
# (TRANSFER_BUNDLE, scripts/node-bundle.sh): its Python 3.11 has no ensurepip, so pip comes from the
# bundle's pip wheel, and every package from its wheels (PIP_NO_INDEX, PIP_FIND_LINKS).
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt setup.py | deps
ifdef TRANSFER_BUNDLE
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PY) $(firstword $(wildcard $(TRANSFER_BUNDLE)/wheels/pip-*.whl))/pip install -q pip
else
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
endif
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: deps venv caffe

# A test skipped for want of Caffe, SLURM or WordNet fails `make test`: set-up provides all three.
# check-gpu-build (mk/gpu.mk) compiles and links the CUDA build; caffe-gtest runs Caffe's own CPU test
# suite on the CPU build; the GPU tier (tests/gpu) is not run, nor the offline bundle test (make test-bundle).
test: setup check-gpu-build caffe-gtest
	TRANSFER_TEST_REQUIRE=caffe,slurm,wordnet $(PY) -m pytest -q tests --ignore=tests/gpu -m "not bundle"

# No Caffe build, no training, no cluster: the tests marked slow are left out. Tests that read
# caffe_pb2 use the Caffe `make caffe` recorded (or CAFFE_ROOT), and skip without one.
test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

# The main job: the whole pipeline on the synthetic dataset, every core busy; a rerun reuses what is done.
demo: setup
	$(TRANSFER) demo --plan small

# Both papers at the same scale with every layer n, man-made/natural and Huh et al. (docs/small-scale.md).
demo-full: setup
	$(TRANSFER) demo --plan full

clean-venv:
	rm -rf $(VENV)

-include $(sort $(wildcard mk/*.mk))
