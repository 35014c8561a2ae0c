"""Data sets: class splits, label sets and budgets, the synthetic images, ILSVRC2012 lists, and the LMDB
databases and means every net of a plan reads (`transfer prepare`). Imports core, caffe and plan.
"""
