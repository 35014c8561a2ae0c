# GPU: CI's check that the CUDA build compiles and links (no GPU needed), and the GPU test tier.

# Compile and link the whole CUDA build (PyPI toolkit, one architecture, no cuDNN) on a machine with
# no GPU: libcaffe with every .cu file, and the tools, whose link fails on any undefined GPU function.
# pycaffe is left out (its GPU code is calls into libcaffe that the tools make too); the .cu files are
# compiled as one unit (scripts/cuda_unity.py: their shared headers parsed once). Cached by key like
# the CPU build, so a rerun with unchanged sources takes seconds; not recorded in the venv (the tests
# use the CPU build). `make test` runs it.
CHECK_GPU_ARCH ?= 90
.PHONY: check-gpu-build test-gpu
check-gpu-build: $(VENV)/.installed
	@VENV=$(VENV) PY=$(PY) CAFFE_GPU=1 CAFFE_CUDA=pypi CAFFE_CUDNN=0 CAFFE_CUDA_ARCHS=$(CHECK_GPU_ARCH) CAFFE_CUDA_UNITY=1 \
		CAFFE_PYTHON=0 CAFFE_RECORD=0 CAFFE_SRC="$(CAFFE_SRC)" nice scripts/build-caffe.sh

# The GPU tier, on a GPU node with the CUDA build (`CAFFE_GPU=1 make caffe`): the tiny plan trained
# on GPU 0, kill -9 and resume, `caffe time` of the paper's CaffeNet, and Caffe against a PyTorch
# CaffeNet with 1-3 nets at once (benchmarks/bench_gpu.py), into BENCHMARKS.md. Skipped
# with the reason where no GPU is visible; TIER_DEVICE=cpu runs the same tests on the CPU build.
TIER_DEVICE ?=
test-gpu: setup
	TRANSFER_GPU_TIER_DEVICE=$(TIER_DEVICE) $(PY) -m pytest -q -rs tests/gpu
	@if [ "$(TIER_DEVICE)" = cpu ]; then \
		$(PY) benchmarks/bench_gpu_caffenet.py --cpu --batch 4 --iterations 1 && \
		$(PY) benchmarks/bench_gpu.py --cpu --batch 2 --iterations 1 --nets 1,2; \
	elif $(PY) -c 'import sys; from transfer.caffe import gpu; sys.exit(0 if gpu.visible_gpus()[0] else 1)'; then \
		$(PY) benchmarks/bench_gpu_caffenet.py --gpu 0 --write && \
		$(PY) benchmarks/bench_gpu.py --gpu 0 --write; \
	else echo "test-gpu: no GPU visible: CaffeNet timing skipped"; fi
