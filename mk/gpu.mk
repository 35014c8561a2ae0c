# GPU: CI's check that the CUDA build compiles and links (no GPU needed), and the GPU test tier.

# Compile and link the whole CUDA build (PyPI toolkit with cuDNN and NVRTC, one architecture) on a
# machine with no GPU: libcaffe with every .cu file and the project's cuDNN convolution, linked with
# --no-undefined, and the tools. pycaffe is left out (its GPU code is calls into libcaffe that the
# tools make too); the .cu files are compiled as one unit (scripts/cuda_unity.py: their shared headers
# parsed once). Cached by key like the CPU build, so a rerun with unchanged sources takes seconds; not
# recorded as the venv's Caffe (the tests use the CPU build), but its root is kept in
# .venv/caffe-gpu-check for the tests of the build. scripts/gpu_build_check.py then prints the CUDA and
# cuDNN versions and the cuDNN layers' functions (`nm`), and fails when one is missing or `ldd -r`
# finds a symbol undefined. `make test` runs it.
CHECK_GPU_ARCH ?= 90
.PHONY: check-gpu-build test-gpu
check-gpu-build: $(VENV)/.installed
	@VENV=$(VENV) PY=$(PY) CAFFE_GPU=1 CAFFE_CUDA=pypi CAFFE_CUDNN=1 CAFFE_CUDA_ARCHS=$(CHECK_GPU_ARCH) CAFFE_CUDA_UNITY=1 \
		CAFFE_PYTHON=0 CAFFE_RECORD=0 CAFFE_ROOT_OUT=$(VENV)/caffe-gpu-check CAFFE_SRC="$(CAFFE_SRC)" \
		nice scripts/build-caffe.sh
	@$(PY) scripts/gpu_build_check.py "$$(cat $(VENV)/caffe-gpu-check)"

# Caffe's own gtest suite (src/caffe/test) against the venv's Caffe: compiled once per key into the
# cache (scripts/caffe-gtest.sh), run, counted; exclusions with their reasons in tests/gtest/exclusions.txt.
.PHONY: caffe-gtest node-bundle test-bundle
caffe-gtest: caffe
	@PY=$(PY) nice scripts/caffe-gtest.sh "$$(cat $(VENV)/caffe-root)"

# The GPU tier (scripts/test-gpu.sh): on a GPU node, the CUDA build for its GPUs (cuDNN unless
# CAFFE_CUDNN=0), Caffe's gtest suite with its GPU cases, tests/gpu (numbers: GPU cuDNN, GPU Caffe and
# CPU agree in fp32, TF32 measurably differs, --deterministic reruns bit-identical; the tiny plan end to
# end, kill -9 and resume) and the CaffeNet benchmarks into BENCHMARKS.md, then one summary table.
# TIER_DEVICE=cpu runs all of it on the CPU build (GPU-vs-CPU checks compare CPU with CPU there);
# where no GPU is visible the tests skip with the reason. BUNDLE=archive takes everything from a
# node bundle (make node-bundle), with no network.
TIER_DEVICE ?=
BUNDLE ?=
test-gpu:
	@TIER_DEVICE=$(TIER_DEVICE) BUNDLE=$(BUNDLE) scripts/test-gpu.sh

# One archive for a GPU node without network or root (scripts/node-bundle.sh), made on a connected Debian
# 12 machine: NODE_CUDA=system leaves out the PyPI CUDA wheels, for a node whose own CUDA builds Caffe.
NODE_CUDA ?= pypi
BUNDLE_OUT ?= transfer-node-bundle.tar
node-bundle: venv
	@PY=$(PY) scripts/node-bundle.sh make $(BUNDLE_OUT) $(if $(filter system,$(NODE_CUDA)),--no-cuda)

# The offline part of a bundle, proved on this machine: a bundle made here, then unpacked and Caffe built
# and run from it in a network namespace with no network (tests/test_node_bundle.py; several minutes).
test-bundle: venv
	$(PY) -m pytest -q -m bundle tests/test_node_bundle.py
