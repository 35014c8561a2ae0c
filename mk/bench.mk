# Benchmarks' tools: Caffe's own convert_imageset (with Debian's OpenCV), the yardstick that
# benchmarks/bench_datasets.py runs beside `transfer data build`. Not needed by the pipeline or the tests.
.PHONY: bench-tools
bench-tools: setup
	@scripts/install-deps.sh scripts/apt-packages-bench.txt
	@VENV=$(VENV) scripts/build-convert-imageset.sh
