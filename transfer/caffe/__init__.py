"""Everything about Caffe itself: finding the build (binary, pycaffe, caffe_pb2), reading caffemodels,
its GPU build and the node's GPUs, `transfer doctor`, precision settings, and parsing its logs.
Imports only core.
"""
