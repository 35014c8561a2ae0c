# Caffe: a cached build of our own (scripts/build-caffe.sh), recorded in the venv.
# CAFFE_SRC=tree builds another tree; CAFFE_ROOT=dir uses an existing build; CAFFE_GPU=1 for CUDA.
.PHONY: caffe
caffe: $(VENV)/.installed
	@VENV=$(VENV) PY=$(PY) CAFFE_SRC="$(CAFFE_SRC)" CAFFE_ROOT="$(CAFFE_ROOT)" CAFFE_GPU="$(CAFFE_GPU)" \
		scripts/build-caffe.sh
