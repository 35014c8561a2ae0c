"""The plan: one typed object naming every net and data set of an experiment (YAML read once), each
net's generated Caffe files and run directory, the training order, and GPU placement.
Imports core and caffe.
"""
